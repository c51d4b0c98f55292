// Launch from a snapshot: verify it, migrate an empty database, then write every section in one transaction so that
// balances, registry, rollups and the audit chain equal the snapshot's exactly.
import * as dagCbor from '@ipld/dag-cbor';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import { postgresMigrationsDir } from '../../platform/paths.js';
import { migrate } from '../../stores/postgres/migrator.js';
import { withTransaction, type Pool, type PoolClient } from '../../stores/postgres/pool.js';
import { AuditService } from '../audit/index.js';
import { snapshotSections } from '../canonical/index.js';
import { SnapshotReader } from './snapshot-reader.js';
import { verifyOpened, type VerifyOptions, type VerifyReport } from './snapshot-verify.js';
import { insertSql, restoreParams, type TableSpec } from '../canonical/index.js';

export interface RestoreResult {
  report: VerifyReport;
  rows: Array<{ name: string; count: number }>;
}

const BATCH = 5000;

export async function restoreSnapshot(
  bytes: Uint8Array,
  into: { pool: Pool; schema: string; log: Logger },
  opts: VerifyOptions = {},
): Promise<RestoreResult> {
  const snap = await SnapshotReader.open(bytes, opts.expectedCid);
  // Refuses a tampered or inconsistent file before touching the target.
  const report = await verifyOpened(snap, opts);
  if (snap.manifest.kind !== 'snapshot')
    throw new AppError('invalid_request', 'only a snapshot (not a freeze) can be restored');
  await migrate(into.pool, { dir: postgresMigrationsDir(), schema: into.schema });
  const rows: RestoreResult['rows'] = [];
  await withTransaction(into.pool, async (tx) => {
    await refuseNonEmpty(tx);
    for (const [i, spec] of snapshotSections.entries()) {
      if (!(spec.name in snap.manifest.sections)) continue;
      await opts.onProgress?.({
        stage: 'restore',
        done: i,
        total: snapshotSections.length,
        detail: spec.name,
      });
      rows.push({ name: spec.name, count: await restoreSection(tx, snap, spec) });
    }
    // Identity values were kept; each sequence continues after them.
    for (const spec of snapshotSections.filter((s) => s.identity)) {
      const [table, col] = [spec.name, spec.orderBy[0]!];
      await tx.query(
        `select setval(pg_get_serial_sequence('${table}', '${col}'), coalesce((select max("${col}") from "${table}"), 0) + 1, false)`,
      );
    }
    await new AuditService({ pool: into.pool, log: into.log }).append(
      {
        actor: 'system:restore',
        action: 'network.restore',
        target: snap.cid,
        body: { seq: snap.manifest.seq },
      },
      tx,
    );
  });
  return { report, rows };
}

async function refuseNonEmpty(tx: PoolClient): Promise<void> {
  const r = await tx.query<{ used: boolean }>(
    `select exists (select 1 from accounts) or exists (select 1 from nodes) or exists (select 1 from ledger_entries)
       or exists (select 1 from audit_log) or exists (select 1 from network_config_versions) as used`,
  );
  if (r.rows[0]?.used)
    throw new AppError(
      'precondition_failed',
      'the target database is not empty; restore only into a fresh one',
    );
}

async function restoreSection(tx: PoolClient, snap: SnapshotReader, spec: TableSpec): Promise<number> {
  const section = await snap.section(spec.name);
  const expected = spec.columns.map((c) => `${c.name}:${c.type}`);
  const actual = section.columns.map(([n, t]) => `${n}:${t}`);
  // A snapshot of an earlier version may lack columns appended since (they take their defaults); nothing else.
  if (actual.length === 0 || actual.length > expected.length || actual.some((c, i) => c !== expected[i]))
    throw new AppError(
      'invalid_request',
      `section ${spec.name} has columns ${actual.join(',')}; this version expects ${expected.join(',')}`,
    );
  const written: TableSpec = { ...spec, columns: spec.columns.slice(0, actual.length) };
  const sql = insertSql(written);
  let batch: unknown[][] = [];
  let count = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    await tx.query(sql, restoreParams(written, batch));
    count += batch.length;
    batch = [];
  };
  for (let i = 0; i < section.chunks.length; i += 1) {
    for (const row of dagCbor.decode(
      await snap.block(section.chunks[i]!, `chunk ${i} of ${spec.name}`),
    ) as unknown[][]) {
      batch.push(row);
      if (batch.length >= BATCH) await flush();
    }
  }
  await flush();
  return count;
}
