// Launch from a snapshot into a database of its own: every balance and registry row equal, the ledger and audit
// chain verify there; a tampered file and a non-empty target are refused.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { insertJobs, insertRegistry, insertTopups } from '../../../test/archive-factories.js';
import { createScratchDatabase, indexCar, tempArchiveDir } from '../../../test/archive-harness.js';
import { AuditService } from '../audit/index.js';
import { LedgerService } from '../credits/index.js';
import { RollupsService } from '../rollups/index.js';
import type { Pool } from '../../stores/postgres/pool.js';
import {
  DirectoryTarget,
  SnapshotsService,
  carKey,
  restoreSnapshot,
  selectSql,
  snapshotSections,
} from './index.js';

let db: PgTestSchema;
let archive: { dir: string; remove(): Promise<void> };
let target: Awaited<ReturnType<typeof createScratchDatabase>>;
let originCid: string;
let bytes: Buffer;
let auditCountAtSnapshot: number;

beforeAll(async () => {
  db = await createPgTestSchema();
  archive = await tempArchiveDir();
  target = await createScratchDatabase();
  const ns = await createNamespaces(db.pool, 5);
  const ids = ns.map((n) => n.id);
  await insertRegistry(db.pool, ns[0]!.accountId);
  await db.pool.query(
    `insert into api_keys (namespace_id, prefix, secret_hash, name, rate_limit_per_s) values ($1, 'abcdefabcdef', '\\x0102', 'k', 5)`,
    [ids[0]],
  );
  const from = new Date('2026-03-01T00:00:00Z');
  const to = new Date('2026-03-20T00:00:00Z');
  await insertJobs(db.pool, { count: 1000, from, to, namespaceIds: ids });
  await insertTopups(db.pool, { count: 2000, from, to, namespaceIds: ids, tag: 'x' });
  // Live ledger activity as well: a reservation and a settlement through the real ledger.
  const ledger = new LedgerService({
    pool: db.pool,
    log: testLog,
    options: { batchMaxWaitMs: 0, batchMaxSize: 1, batchConcurrency: 1, holdTimeoutMs: 60_000 },
  });
  await ledger.reserve(ids[1]!, '00000000-0000-4000-8000-000000000001', 500n);
  await ledger.reserve(ids[2]!, '00000000-0000-4000-8000-000000000002', 700n);
  await ledger.settle(ids[2]!, '00000000-0000-4000-8000-000000000002', 300n);
  await ledger.stop();
  const audit = new AuditService({ pool: db.pool, log: testLog });
  await audit.append({
    actor: 'admin',
    action: 'subcloud.create',
    target: 'sc-a',
    body: { nested: { a: [1, 2.5] } },
  });
  const clock = { now: () => new Date('2026-04-15T00:00:00Z') };
  await new RollupsService({
    pool: db.pool,
    log: testLog,
    clock,
    options: { detailWindowDays: 7, maxDaysPerTransaction: 31 },
    audit,
  }).rollUp();
  auditCountAtSnapshot = Number((await db.pool.query('select count(*)::int as n from audit_log')).rows[0].n);
  const snapshots = new SnapshotsService({
    pool: db.pool,
    log: testLog,
    clock,
    audit,
    target: new DirectoryTarget(archive.dir),
    limits: { rows: 300, bytes: 32 * 1024 },
  });
  const created = await snapshots.create();
  originCid = created.record.cid;
  bytes = await readFile(join(archive.dir, carKey(created.record.cid)));
});
afterAll(async () => {
  await target.drop();
  await db.drop();
  await archive.remove();
});

async function rows(pool: Pool, table: string, where = ''): Promise<unknown[]> {
  const spec = snapshotSections.find((s) => s.name === table)!;
  return (await pool.query(selectSql(spec, where))).rows;
}

describe('restore from a snapshot', () => {
  it('refuses a tampered file before touching the target', async () => {
    const blocks = await indexCar(bytes);
    const tampered = Buffer.from(bytes);
    const b = blocks[2]!;
    tampered[b.blockOffset + 1]! ^= 0xff;
    await expect(
      restoreSnapshot(tampered, { pool: target.pool, schema: 'public', log: testLog }),
    ).rejects.toMatchObject({
      code: 'integrity_failed',
    });
    const tables = await target.pool.query(
      `select count(*)::int as n from pg_tables where schemaname = 'public'`,
    );
    expect(tables.rows[0].n).toBe(0);
  });

  it('restores every balance, registry, rollup and audit row exactly; ledger and audit verify there', async () => {
    const result = await restoreSnapshot(bytes, { pool: target.pool, schema: 'public', log: testLog });
    expect(result.rows.find((r) => r.name === 'ledger_entries')?.count).toBe(2000 + 3 + 1);
    for (const spec of snapshotSections) {
      const where = spec.name === 'audit_log' ? `where seq <= ${auditCountAtSnapshot}` : '';
      const source = await rows(db.pool, spec.name, where);
      expect(await rows(target.pool, spec.name, where), spec.name).toEqual(source);
    }
    const ledger = new LedgerService({
      pool: target.pool,
      log: testLog,
      options: { batchMaxWaitMs: 0, batchMaxSize: 1, batchConcurrency: 1, holdTimeoutMs: 60_000 },
    });
    expect(await ledger.verifyLedger()).toEqual([]);
    // The restored network keeps working: a new ledger entry gets the next identity.
    const [ns] = (
      await target.pool.query('select namespace_id from credit_balances order by namespace_id limit 1')
    ).rows;
    await ledger.topUp(ns.namespace_id, 1n, 'after-restore');
    await ledger.stop();
    const audit = new AuditService({ pool: target.pool, log: testLog });
    const verified = await audit.verify();
    expect(verified.problems).toEqual([]);
    expect(verified.entries).toBe(auditCountAtSnapshot + 1); // the snapshot's entries + network.restore
  });

  it("the restored network's first snapshot names its origin CID, and it restored only from the pinned CID", async () => {
    await expect(
      restoreSnapshot(
        bytes,
        { pool: target.pool, schema: 'public', log: testLog },
        { expectedCid: 'bafyother' },
      ),
    ).rejects.toMatchObject({ code: 'integrity_failed' });
    const dir = await tempArchiveDir();
    try {
      const first = await new SnapshotsService({
        pool: target.pool,
        log: testLog,
        clock: { now: () => new Date('2026-04-16T00:00:00Z') },
        audit: new AuditService({ pool: target.pool, log: testLog }),
        target: new DirectoryTarget(dir.dir),
        limits: { rows: 300, bytes: 32 * 1024 },
      }).create();
      expect(first.record).toMatchObject({ seq: 1, prevCid: null });
      const { SnapshotReader } = await import('./index.js');
      const snap = await SnapshotReader.open(
        await readFile(join(dir.dir, carKey(first.record.cid))),
        first.record.cid,
      );
      expect(snap.manifest.origin?.toString()).toBe(originCid);
    } finally {
      await dir.remove();
    }
  });

  it('refuses a target that is not empty', async () => {
    await expect(
      restoreSnapshot(bytes, { pool: target.pool, schema: 'public', log: testLog }),
    ).rejects.toMatchObject({
      code: 'precondition_failed',
    });
  });
});
