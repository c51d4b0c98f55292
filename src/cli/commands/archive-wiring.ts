// Builds the archive services (audit, rollups, snapshots) for one CLI command from the config, and closes them.
import type { Pool } from '../../stores/postgres/pool.js';
import { createAuditModule, type AuditService } from '../../modules/audit/index.js';
import { createRollupsModule, type RollupsService } from '../../modules/rollups/index.js';
import { createSnapshotsModule, type SnapshotsService } from '../../modules/snapshots/index.js';
import type { ColdStore } from '../../stores/cold/index.js';
import { openCliPool, type CliContext } from '../context.js';

export interface ArchiveServices {
  pool: Pool;
  audit: AuditService;
  rollups: RollupsService;
  snapshots: SnapshotsService;
  target: ColdStore;
}

export async function withArchive<T>(ctx: CliContext, fn: (s: ArchiveServices) => Promise<T>): Promise<T> {
  const { config, log } = ctx;
  const pool = openCliPool(config, 'archive');
  const { audit } = createAuditModule({ stores: { pool }, log });
  const { snapshots, target } = createSnapshotsModule({ config, stores: { pool }, log, audit });
  const { rollups } = createRollupsModule({ config, stores: { pool }, log, audit });
  try {
    return await fn({ pool, audit, rollups, snapshots, target });
  } finally {
    await pool.end();
  }
}
