// Builds the archive services (audit, rollups, snapshots) for one CLI command from the config, and closes them.
import { systemClock } from '../../platform/clock.js';
import { createPgPool, type Pool } from '../../stores/postgres/pool.js';
import { AuditService } from '../../modules/audit/index.js';
import { RollupsService } from '../../modules/rollups/index.js';
import {
  CheckpointLog,
  CheckpointSigner,
  DirectoryTarget,
  SnapshotsService,
} from '../../modules/snapshots/index.js';
import type { CliContext } from '../context.js';

export interface ArchiveServices {
  pool: Pool;
  audit: AuditService;
  rollups: RollupsService;
  snapshots: SnapshotsService;
  target: DirectoryTarget;
}

export async function withArchive<T>(ctx: CliContext, fn: (s: ArchiveServices) => Promise<T>): Promise<T> {
  const { config, log } = ctx;
  const pool = createPgPool({
    url: config.POSTGRES_URL,
    size: 2,
    schema: config.POSTGRES_SCHEMA,
    applicationName: 'rty-archive',
  });
  const audit = new AuditService({ pool, log });
  const target = new DirectoryTarget(config.ARCHIVE_DIR);
  const snapshots = new SnapshotsService({
    pool,
    log,
    clock: systemClock,
    audit,
    target,
    limits: { rows: config.SNAPSHOT_CHUNK_ROWS, bytes: config.SNAPSHOT_CHUNK_MAX_BYTES },
    // The network key that signs config versions signs checkpoints too; the log lives beside the CARs.
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
  const rollups = new RollupsService({
    pool,
    log,
    clock: systemClock,
    audit,
    options: {
      detailWindowDays: config.ROLLUP_DETAIL_WINDOW_DAYS,
      maxDaysPerTransaction: config.ROLLUP_MAX_DAYS_PER_TX,
    },
  });
  try {
    return await fn({ pool, audit, rollups, snapshots, target });
  } finally {
    await pool.end();
  }
}

export const witnessDirs = (list: string): string[] =>
  list
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
