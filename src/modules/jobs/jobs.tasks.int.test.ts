// The stale-job reconciler on the real PostgreSQL: job rows left 'queued'/'dispatched' after their hold closed
// without a charge become 'expired' (cost 0) exactly once, even with concurrent runs; open or settled jobs and
// holds closed within the grace period are left to the job flow; each expired job gets its result row and its
// submitted and finished records, like any closed job.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNamespaces } from '../../../test/factories.js';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { LedgerService } from '../credits/index.js';
import type { RecordEventInput } from '../records/index.js';
import { createStaleJobsTask, parseStoredResult } from './index.js';

let db: PgTestSchema;
let ledger: LedgerService;

beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 6 });
  ledger = new LedgerService({
    pool: db.pool,
    log: testLog,
    options: { batchMaxWaitMs: 1, batchMaxSize: 50, batchConcurrency: 2, holdTimeoutMs: 60_000 },
  });
});
afterAll(async () => {
  await ledger?.stop();
  await db?.drop();
});

async function insertJob(ns: string, status: 'queued' | 'dispatched'): Promise<string> {
  const id = randomUUID();
  await db.pool.query(
    `insert into jobs (id, namespace_id, model, mode, priority, environment, status, max_cost, created_at)
     values ($1, $2, 'llama3-8b', 'polling', 'bulk', 'testnet', $3, 1000, now())`,
    [id, ns, status],
  );
  return id;
}

const statusOf = async (id: string) =>
  (
    await db.pool.query<{ status: string; cost: bigint | null; finished_at: Date | null }>(
      'select status, cost, finished_at from jobs where id = $1',
      [id],
    )
  ).rows[0]!;

describe('stale-job reconciler', () => {
  it('expires open jobs whose hold was voided or expired, once across concurrent runs; leaves the others', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    await ledger.topUp(ns!.id, 1_000_000n, 'seed');
    const voided: string[] = [];
    for (const status of ['queued', 'dispatched', 'queued'] as const) {
      const id = await insertJob(ns!.id, status);
      await ledger.reserve(ns!.id, id, 1000n);
      await ledger.void(ns!.id, id);
      voided.push(id);
    }
    const expiredHold = await insertJob(ns!.id, 'queued');
    await ledger.reserve(ns!.id, expiredHold, 1000n, 1);
    await new Promise((r) => setTimeout(r, 5));
    expect(await ledger.expireHolds()).toBe(1);
    const pending = await insertJob(ns!.id, 'queued');
    await ledger.reserve(ns!.id, pending, 1000n);
    const settled = await insertJob(ns!.id, 'dispatched');
    await ledger.reserve(ns!.id, settled, 1000n);
    await ledger.settle(ns!.id, settled, 400n); // posted: the job flow finishes it as succeeded, not this task

    // Within the grace period nothing moves (the job flow's own terminal transition comes first).
    const early = createStaleJobsTask({
      pool: db.pool,
      log: testLog,
      options: { intervalMs: 1000, graceMs: 60_000, batchSize: 2 },
    });
    expect(await early.run(new AbortController().signal)).toEqual({ expired: 0 });

    const published: RecordEventInput[][] = [];
    const records = { publish: async (events: RecordEventInput[]) => void published.push(events) };
    const tasks = [1, 2, 3].map(() =>
      createStaleJobsTask({
        pool: db.pool,
        log: testLog,
        records,
        options: { intervalMs: 1000, graceMs: 0, batchSize: 2 },
      }),
    );
    const results = await Promise.all(tasks.map((t) => t.run(new AbortController().signal)));
    expect(results.reduce((s, r) => s + r.expired, 0)).toBe(4);
    for (const id of [...voided, expiredHold]) {
      const row = await statusOf(id);
      expect(row).toMatchObject({ status: 'expired', cost: 0n });
      expect(row.finished_at).not.toBeNull();
    }
    expect((await statusOf(pending)).status).toBe('queued');
    expect((await statusOf(settled)).status).toBe('dispatched');
    // Like any closed job: a submitted and a finished record each, and a result row marked recorded.
    const events = published.flat();
    const moved = [...voided, expiredHold].sort();
    const finished = events.filter((e) => e.type === 'job.finished');
    expect(finished.map((e) => e.jobId).sort()).toEqual(moved);
    expect(finished.every((e) => e.type === 'job.finished' && e.status === 'expired')).toBe(true);
    expect(
      events
        .filter((e) => e.type === 'job.submitted')
        .map((e) => e.jobId)
        .sort(),
    ).toEqual(moved);
    const rows = await db.pool.query<{ job_id: string; status: string; recorded: boolean; result: unknown }>(
      'select job_id::text, status, recorded, result from job_results where job_id = any($1::uuid[])',
      [moved],
    );
    expect(rows.rows.map((r) => r.job_id).sort()).toEqual(moved);
    for (const r of rows.rows) {
      expect(r).toMatchObject({ status: 'expired', recorded: true });
      expect(parseStoredResult(r.result)).toMatchObject({
        jobId: r.job_id,
        status: 'expired',
        costMicro: '0',
      });
    }

    // Nothing left: a second pass changes nothing.
    expect(await tasks[0]!.run(new AbortController().signal)).toEqual({ expired: 0 });
  });
});
