// Rollups against the real PostgreSQL: totals equal the detail, re-runs change nothing, a crash mid-rollup leaves
// no partial day and the re-run is correct, tampering with a rolled-up row is caught.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { insertJobs, insertTopups } from '../../../test/archive-factories.js';
import { TaskRunner } from '../../background/task-runner.js';
import { AuditService } from '../audit/index.js';
import { RollupsService, createRollupTask } from './index.js';

let db: PgTestSchema;
let service: RollupsService;
const now = new Date('2026-04-15T12:00:00Z');

beforeAll(async () => {
  db = await createPgTestSchema();
  const ns = await createNamespaces(db.pool, 3);
  const ids = ns.map((n) => n.id);
  // 6,000 jobs over 40 days across two monthly partitions, 900 ledger entries over the same days.
  const from = new Date('2026-01-20T00:00:00Z');
  const to = new Date('2026-03-01T00:00:00Z');
  await insertJobs(db.pool, { count: 6000, from, to, namespaceIds: ids });
  await insertTopups(db.pool, { count: 900, from, to, namespaceIds: ids, tag: 'r' });
  service = new RollupsService({
    pool: db.pool,
    log: testLog,
    clock: { now: () => now },
    options: { detailWindowDays: 7, maxDaysPerTransaction: 31 },
    audit: new AuditService({ pool: db.pool, log: testLog }),
  });
});
afterAll(async () => {
  await db.drop();
});

const one = async (sql: string) => (await db.pool.query(sql)).rows[0] as Record<string, string>;
const detailTotals = () =>
  one(`select count(*)::text as jobs, sum(tokens_in + tokens_out)::text as tokens, coalesce(sum(cost), 0)::text as credits,
         count(latency_ms)::text as lat_n, coalesce(sum(latency_ms), 0)::text as lat_sum
       from jobs where status in ('succeeded','failed','expired','cancelled')`);
const rollupTotals = () =>
  one(`select sum(jobs)::text as jobs, sum(tokens_in + tokens_out)::text as tokens, sum(credits)::text as credits,
         sum(latency_count)::text as lat_n, sum(latency_sum_ms)::text as lat_sum from job_rollups`);
const fingerprint = () =>
  one(`select (select md5(string_agg(t::text, ',' order by t::text)) from job_rollups t) as j,
              (select md5(string_agg(t::text, ',' order by t::text)) from ledger_rollups t) as l,
              (select md5(string_agg(day::text || encode(hash, 'hex'), ',' order by day)) from rollup_periods) as p`);

describe('rollups', () => {
  it('a crash after aggregating the second chunk leaves only the first chunk; the re-run completes it exactly', async () => {
    let chunks = 0;
    await expect(
      service.rollUp({
        onProgress: (p) => {
          if (p.stage === 'hashed' && ++chunks === 2) throw new Error('simulated crash');
        },
      }),
    ).rejects.toThrow('simulated crash');
    const partial = await one(
      `select count(*)::text as days, min(day)::text as first, max(day)::text as last,
         (select count(*) from job_rollups where day >= '2026-02-01')::text as feb_rows from rollup_periods`,
    );
    // January (20th..31st) committed; nothing of February survived the crash.
    expect(partial).toEqual({ days: '12', first: '2026-01-20', last: '2026-01-31', feb_rows: '0' });

    const r = await service.rollUp();
    // February and March up to the cutoff (2026-04-08 exclusive): 28 + 31 + 7 days.
    expect(r.days).toBe(28 + 31 + 7);
    expect(await rollupTotals()).toEqual(await detailTotals());
    const ledger = await one(
      `select (select count(*) from ledger_entries)::text as n, (select sum(amount) from ledger_entries)::text as amount,
              (select sum(entries) from ledger_rollups)::text as rn, (select sum(amount) from ledger_rollups)::text as ramount`,
    );
    expect([ledger.rn, ledger.ramount]).toEqual([ledger.n, ledger.amount]);
  });

  it('re-running (directly or as the recurring task) changes nothing', async () => {
    const before = await fingerprint();
    expect((await service.rollUp()).days).toBe(0);
    const runner = new TaskRunner({ pool: db.pool, log: testLog, tasks: [] });
    expect(await runner.runOnce(createRollupTask(service, 60_000))).toBe(true);
    await runner.stop();
    expect(await fingerprint()).toEqual(before);
  });

  it('histogram buckets add up to the latency count, and period hashes verify', async () => {
    const bad = await one(
      `select count(*)::text as n from job_rollups
       where (select sum(x) from unnest(latency_buckets) x) <> latency_count`,
    );
    expect(bad.n).toBe('0');
    expect(await service.verifyPeriods()).toEqual({ days: 78, bad: [] });
  });

  it('a changed rollup row is named by its day', async () => {
    await db.pool.query(
      `update job_rollups set credits = credits + 1
       where (day, namespace_id, model, node_address, status) = (select day, namespace_id, model, node_address, status
         from job_rollups where day = '2026-02-10' limit 1)`,
    );
    expect((await service.verifyPeriods()).bad).toEqual(['2026-02-10']);
    await db.pool
      .query(`update job_rollups set credits = credits - 1 where day = '2026-02-10' and credits > 0 and
      (day, namespace_id, model, node_address, status) = (select day, namespace_id, model, node_address, status
         from job_rollups where day = '2026-02-10' limit 1)`);
  });
});
