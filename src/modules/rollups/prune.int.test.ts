// Pruning against the real PostgreSQL: a monthly jobs partition is dropped only once its days are in hashed rollups
// and in an archived, verified snapshot, and only when its detail totals equal the rollup totals, which survive it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { insertJobs, insertTopups } from '../../../test/archive-factories.js';
import { tempArchiveDir } from '../../../test/archive-harness.js';
import { AuditService } from '../audit/index.js';
import { SnapshotsService } from '../snapshots/index.js';
import { RollupsService } from './index.js';
import { DirectoryStore } from '../../stores/cold/index.js';

let db: PgTestSchema;
let archive: { dir: string; remove(): Promise<void> };
let rollups: RollupsService;
let snapshots: SnapshotsService;
let audit: AuditService;
let namespaceIds: string[];
const clock = { now: () => new Date('2026-04-15T12:00:00Z') };
const cover = (from: string, to: string) => snapshots.coverForPrune(from, to);

beforeAll(async () => {
  db = await createPgTestSchema();
  archive = await tempArchiveDir();
  namespaceIds = (await createNamespaces(db.pool, 3)).map((n) => n.id);
  // Activity starts on 5 January: the first month is partial and must still be prunable.
  await insertJobs(db.pool, {
    count: 4000,
    from: new Date('2026-01-05T00:00:00Z'),
    to: new Date('2026-03-01T00:00:00Z'),
    namespaceIds,
  });
  // March holds jobs that never finished (every 7th): its partition must stay.
  await insertJobs(db.pool, {
    count: 700,
    from: new Date('2026-03-01T00:00:00Z'),
    to: new Date('2026-04-01T00:00:00Z'),
    namespaceIds,
    withUnfinished: true,
  });
  await insertTopups(db.pool, {
    count: 1000,
    from: new Date('2026-01-05T00:00:00Z'),
    to: new Date('2026-04-01T00:00:00Z'),
    namespaceIds,
    tag: 'p',
  });
  audit = new AuditService({ pool: db.pool, log: testLog });
  rollups = new RollupsService({
    pool: db.pool,
    log: testLog,
    clock,
    options: { detailWindowDays: 7, maxDaysPerTransaction: 31 },
    audit,
  });
  snapshots = new SnapshotsService({
    pool: db.pool,
    log: testLog,
    clock,
    audit,
    target: new DirectoryStore(archive.dir),
    limits: { rows: 1000, bytes: 256 * 1024 },
  });
});
afterAll(async () => {
  await db.drop();
  await archive.remove();
});

const exists = async (t: string) =>
  (await db.pool.query('select to_regclass($1) as r', [t])).rows[0].r !== null;
const reasons = (r: { kept: Array<{ partition: string; reason: string }> }) =>
  Object.fromEntries(r.kept.map((k) => [k.partition, k.reason]));

describe('pruning job partitions', () => {
  it('keeps partitions that are not rolled up, then those not in a verified snapshot', async () => {
    let r = await rollups.prunePartitions(cover);
    expect(r.pruned).toEqual([]);
    expect(reasons(r).jobs_202601).toMatch(/not rolled up/);
    await rollups.rollUp();
    r = await rollups.prunePartitions(cover);
    expect(r.pruned).toEqual([]);
    expect(reasons(r).jobs_202601).toBe('not inside an archived, verified snapshot');
  });

  it('refuses when the detail no longer equals the rollup (a late row), with the totals in the reason', async () => {
    await snapshots.create();
    await db.pool.query(
      `insert into jobs (id, namespace_id, model, mode, priority, status, max_cost, cost, created_at)
       values ('00000000-0000-4000-8000-0000000000aa', $1, 'late', 'sync', 'bulk', 'succeeded', 10, 5, '2026-02-10T00:00:00Z')`,
      [namespaceIds[0]],
    );
    const r = await rollups.prunePartitions(cover);
    expect(reasons(r).jobs_202602).toMatch(/detail totals .* differ from rollup totals/);
    expect(r.pruned.map((p) => p.partition)).toEqual(['jobs_202601']);
    await db.pool.query(`delete from jobs where id = '00000000-0000-4000-8000-0000000000aa'`);
  });

  it('drops rolled-up, archived months; totals before and after are equal; unfinished work keeps March', async () => {
    const febDetail = (
      await db.pool.query(
        `select count(*)::int8 as jobs, sum(tokens_in + tokens_out)::int8 as tokens, coalesce(sum(cost), 0)::int8 as credits
         from jobs where created_at >= '2026-02-01' and created_at < '2026-03-01'`,
      )
    ).rows[0];
    const before = await rollups.rollupTotals('2026-01-01', '2026-04-01');
    const r = await rollups.prunePartitions(cover);
    expect(r.pruned.map((p) => p.partition)).toEqual(['jobs_202602']);
    expect(r.pruned[0]!.totals).toEqual(febDetail);
    expect(reasons(r).jobs_202603).toBe('100 jobs are not finished');
    expect(await exists('jobs_202601')).toBe(false);
    expect(await exists('jobs_202602')).toBe(false);
    expect(await exists('jobs_202603')).toBe(true);
    expect(await rollups.rollupTotals('2026-01-01', '2026-04-01')).toEqual(before);
    const recorded = await db.pool.query(
      'select partition, snapshot_cid from pruned_job_partitions order by partition',
    );
    expect(recorded.rows.map((x) => x.partition)).toEqual(['jobs_202601', 'jobs_202602']);
    const log = await audit.verify();
    expect(log.problems).toEqual([]);
    const actions = await db.pool.query(
      `select target from audit_log where action = 'jobs.partition.prune' order by seq`,
    );
    expect(actions.rows.map((x) => x.target)).toEqual(['jobs_202601', 'jobs_202602']);
  });
});
