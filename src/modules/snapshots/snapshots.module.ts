// Builds the snapshots module: content-addressed snapshots in the archive directory or an IPFS node (COLD_STORAGE), signed checkpoints (the
// network key that signs config versions signs them too; the log lives beside the CARs and its witnesses).
import type { Config } from '../../config/config.js';
import { systemClock } from '../../platform/clock.js';
import type { Logger } from '../../platform/logger.js';
import { createColdStore, type ColdStore } from '../../stores/cold/index.js';
import type { Stores } from '../../stores/stores.js';
import type { AuditService } from '../audit/index.js';
import { CheckpointSigner } from './checkpoint.js';
import { CheckpointLog } from './checkpoint-log.js';
import { SnapshotsService } from './snapshots.service.js';

export interface SnapshotsModule {
  snapshots: SnapshotsService;
  target: ColdStore;
}

export function createSnapshotsModule(deps: {
  config: Pick<
    Config,
    | 'ARCHIVE_DIR'
    | 'COLD_STORAGE'
    | 'IPFS_API_URL'
    | 'SNAPSHOT_CHUNK_ROWS'
    | 'SNAPSHOT_CHUNK_MAX_BYTES'
    | 'NETWORK_SIGNING_KEY'
    | 'SNAPSHOT_WITNESS_DIRS'
  >;
  stores: Pick<Stores, 'pool'>;
  log: Logger;
  audit: AuditService;
}): SnapshotsModule {
  const { config, log } = deps;
  const target = createColdStore({
    kind: config.COLD_STORAGE,
    dir: config.ARCHIVE_DIR,
    ipfsApiUrl: config.IPFS_API_URL,
  });
  const snapshots = new SnapshotsService({
    pool: deps.stores.pool,
    log,
    clock: systemClock,
    audit: deps.audit,
    target,
    limits: { rows: config.SNAPSHOT_CHUNK_ROWS, bytes: config.SNAPSHOT_CHUNK_MAX_BYTES },
    checkpoints: {
      signer: new CheckpointSigner(config.NETWORK_SIGNING_KEY),
      log: new CheckpointLog(config.ARCHIVE_DIR, witnessDirs(config.SNAPSHOT_WITNESS_DIRS), (d) =>
        log.warn(
          d,
          'skipped a torn last line of the checkpoint log (an interrupted append; cut by the next one)',
        ),
      ),
    },
  });
  return { snapshots, target };
}

/** SNAPSHOT_WITNESS_DIRS: a comma-separated list of directories. */
export const witnessDirs = (list: string): string[] =>
  list
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
