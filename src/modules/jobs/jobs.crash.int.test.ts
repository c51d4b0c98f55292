// Crash consistency of the job path by construction, on the real PostgreSQL and Redis (the broker is a plain
// fake of the routing port: these tests drive dispatch by hand). Each test fails on the code before the two
// group-committed transactions: a write that fails mid-way leaves nothing half done, a job lost between its
// commit and its enqueue is refunded within seconds, lost record events are re-sent, a held lease is waited
// out instead of taken over, and an "already delivered" refusal is no node failure.
import { describe, expect, it } from 'vitest';
import { createNamespaces } from '../../../test/factories.js';
import { testLog } from '../../../test/harness.js';
import {
  buildNodes,
  heartbeat,
  openSessions,
  liveConfig,
  randomAddress,
  registerNodes,
  useLiveStores,
} from '../../../test/live-harness.js';
import { LedgerService } from '../credits/index.js';
import type { Lease, NodesModule } from '../nodes/index.js';
import type { JobMessage, RoutingService } from '../routing/index.js';
import type { RecordEventInput } from '../records/index.js';
import { createRecentJobsTask, JobsService, type NodeExecutor } from './index.js';

const env = useLiveStores('jobs-crash');

interface Rig {
  ns: string;
  jobs: JobsService;
  ledger: LedgerService;
  nodes: NodesModule;
  node: string;
  sent: JobMessage[];
  runs: string[];
  events: RecordEventInput[];
  stop(): Promise<void>;
}

async function rig(opts: {
  executor?: (
    lease: Lease,
    job: JobMessage,
    n: number,
  ) => Promise<{ tokensIn: number; tokensOut: number; output: string }>;
  submit?: (m: JobMessage) => Promise<void>;
  publishRecords?: (events: RecordEventInput[]) => Promise<void>;
  jobTimeoutMs?: number;
}): Promise<Rig> {
  const [ns] = await createNamespaces(env.pg.pool, 1);
  const ledger = new LedgerService({
    pool: env.pg.pool,
    log: testLog,
    options: { batchMaxWaitMs: 2, batchMaxSize: 100, batchConcurrency: 2, holdTimeoutMs: 60_000 },
  });
  await ledger.topUp(ns!.id, 10_000_000n, 'seed');
  const nodes = buildNodes(
    env.pg.pool,
    env.space.redis,
    liveConfig(env.space.prefix, { LEASE_TTL_MS: 30_000 }),
  );
  const node = randomAddress();
  await registerNodes(env.pg.pool, [{ address: node, environment: 'testnet' }]);
  await openSessions(nodes, [{ address: node, environment: 'testnet' }]);
  await nodes.presence.ingest(
    heartbeat(node, {
      environment: 'testnet',
      models: [{ name: 'm1', version: 'v1', active: true }],
      capacity: 4,
    }),
  );
  const sent: JobMessage[] = [];
  const runs: string[] = [];
  const events: RecordEventInput[] = [];
  const executor: NodeExecutor = {
    run: async (lease, job) => {
      runs.push(lease.nodeAddress);
      if (opts.executor) return opts.executor(lease, job, runs.length);
      return { tokensIn: 10, tokensOut: 20, output: `out ${job.jobId}` };
    },
  };
  // A fake of the routing port: the job messages are kept for the test to dispatch by hand.
  const routing = {
    submit: opts.submit ?? (async (m: JobMessage) => void sent.push(m)),
    publishEvent: async () => undefined,
  } as unknown as RoutingService;
  const jobs = new JobsService({
    pool: env.pg.pool,
    ledger,
    routing,
    matchmaking: nodes.matchmaking,
    executor,
    log: testLog,
    records: { publish: opts.publishRecords ?? (async (e) => void events.push(...e)) },
    options: {
      pricePerTokenMicro: 100n,
      nodeSharePercent: 80n,
      maxAttempts: 3,
      jobTimeoutMs: opts.jobTimeoutMs ?? 5_000,
    },
  });
  return {
    ns: ns!.id,
    jobs,
    ledger,
    nodes,
    node,
    sent,
    runs,
    events,
    stop: async () => {
      await jobs.stop();
      await ledger.stop();
    },
  };
}

const submitOne = (r: Rig, model = 'm1') =>
  r.jobs.submit({
    namespaceId: r.ns,
    model,
    environment: 'testnet',
    priority: 'bulk',
    maxTokens: 100,
    ttlMs: 60_000,
  });

async function entries(jobId: string): Promise<string[]> {
  const e = await env.pg.pool.query<{ kind: string }>(
    'select kind from ledger_entries where job_id = $1 order by id',
    [jobId],
  );
  return e.rows.map((x) => x.kind);
}

async function rowStatus(jobId: string): Promise<string | undefined> {
  const r = await env.pg.pool.query<{ status: string }>('select status from jobs where id = $1', [jobId]);
  return r.rows[0]?.status;
}

describe('submit: reservation and job row in one shared transaction', () => {
  it('a job row that cannot be written leaves no hold; the other jobs of its batch and a short namespace keep their own outcomes', async () => {
    const r = await rig({});
    const [poor] = await createNamespaces(env.pg.pool, 1);
    await env.pg.pool.query(`
      create function refuse_boom() returns trigger language plpgsql as $$
      begin if new.model = 'boom' then raise exception 'boom refused'; end if; return new; end $$;
      create trigger refuse_boom before insert on jobs for each row execute function refuse_boom();`);
    const outcomes = await Promise.allSettled([
      ...Array.from({ length: 5 }, () => submitOne(r)),
      submitOne(r, 'boom'),
      r.jobs.submit({
        namespaceId: poor!.id,
        model: 'm1',
        environment: 'testnet',
        priority: 'bulk',
        maxTokens: 100,
        ttlMs: 60_000,
      }),
    ]);
    expect(outcomes.slice(0, 5).every((o) => o.status === 'fulfilled')).toBe(true);
    expect(outcomes[5]).toMatchObject({ status: 'rejected' });
    expect(outcomes[6]).toMatchObject({
      status: 'rejected',
      reason: { code: expect.stringMatching(/insufficient_credits|namespace_not_found/) },
    });
    // Nothing of the refused job remains: no hold, nothing reserved beyond the five accepted jobs.
    const holds = await env.pg.pool.query<{ n: number }>(
      `select count(*)::int as n from credit_holds where namespace_id = $1`,
      [r.ns],
    );
    expect(holds.rows[0]!.n).toBe(5);
    expect((await r.ledger.getBalance(r.ns))?.reserved).toBe(5n * 100n * 100n);
    expect(await r.ledger.verifyLedger()).toEqual([]);
    await r.stop();
  });
});

describe('finish: settle, earning, node balance and terminal row in one shared transaction', () => {
  it('a terminal row that cannot be written leaves the hold pending and no earning; the re-run settles once', async () => {
    const r = await rig({});
    const s = await submitOne(r);
    await env.pg.pool.query(`
      create table refuse_finish (job_id uuid primary key);
      create function refuse_finish() returns trigger language plpgsql as $$
      begin if exists (select 1 from refuse_finish where job_id = new.id) then raise exception 'finish refused'; end if; return new; end $$;`);
    await env.pg.pool.query(
      'create trigger refuse_finish before update on jobs for each row execute function refuse_finish()',
    );
    await env.pg.pool.query('insert into refuse_finish values ($1)', [s.jobId]);
    await expect(r.jobs.handle(r.sent[0]!)).rejects.toThrow();
    // Before: the settle (and maybe the earning) committed while the row stayed open. Now: nothing did.
    expect(await entries(s.jobId)).toEqual(['reserve']);
    expect((await r.ledger.getHold(r.ns, s.jobId))?.status).toBe('pending');
    await env.pg.pool.query('delete from refuse_finish');
    expect(await r.jobs.handle(r.sent[0]!)).toEqual({ kind: 'done' });
    expect(await entries(s.jobId)).toEqual(['reserve', 'settle', 'release', 'earning']);
    expect(await rowStatus(s.jobId)).toBe('succeeded');
    // A redelivery of the finished job changes nothing.
    expect(await r.jobs.handle(r.sent[0]!)).toEqual({ kind: 'done' });
    expect(await entries(s.jobId)).toEqual(['reserve', 'settle', 'release', 'earning']);
    // The result is in PostgreSQL (no Redis results here): a poller gets the output.
    const found = await r.jobs.getJob(r.ns, s.jobId);
    expect(found?.result).toMatchObject({ status: 'succeeded', output: { text: `out ${s.jobId}` } });
    await r.stop();
  });
});

describe('recovery within seconds', () => {
  it('a job whose process died between its submit commit and its enqueue is refunded', async () => {
    // The enqueue never completes (the process "dies" there).
    const r = await rig({ submit: () => new Promise<void>(() => undefined) });
    void submitOne(r);
    let jobId: string | undefined;
    for (let i = 0; i < 200 && !jobId; i += 1) {
      const q = await env.pg.pool.query<{ id: string }>('select id from jobs where namespace_id = $1', [
        r.ns,
      ]);
      jobId = q.rows[0]?.id;
      if (!jobId) await new Promise((res) => setTimeout(res, 10));
    }
    expect(jobId).toBeDefined();
    const task = createRecentJobsTask({
      pool: env.pg.pool,
      jobs: r.jobs,
      log: testLog,
      options: { intervalMs: 1000, graceMs: 0, windowMs: 3600_000, batchSize: 10 },
    });
    expect(await task.run(new AbortController().signal)).toMatchObject({ refunded: 1 });
    expect(await rowStatus(jobId!)).toBe('failed');
    expect(await entries(jobId!)).toEqual(['reserve', 'void']);
    expect((await r.jobs.getJob(r.ns, jobId!))?.result).toMatchObject({ errorCode: 'submit_interrupted' });
    expect(await task.run(new AbortController().signal)).toMatchObject({ refunded: 0 });
    await r.stop();
  });

  it('an unconfirmed job is not refunded while the broker is down or just back (its live submitter republishes it)', async () => {
    const r = await rig({ submit: () => new Promise<void>(() => undefined) });
    void submitOne(r);
    let jobId: string | undefined;
    for (let i = 0; i < 200 && !jobId; i += 1) {
      const q = await env.pg.pool.query<{ id: string }>('select id from jobs where namespace_id = $1', [
        r.ns,
      ]);
      jobId = q.rows[0]?.id;
      if (!jobId) await new Promise((res) => setTimeout(res, 10));
    }
    expect(jobId).toBeDefined();
    await new Promise((res) => setTimeout(res, 30)); // older than the grace below
    let brokerUpForMs = 0;
    const task = createRecentJobsTask({
      pool: env.pg.pool,
      jobs: r.jobs,
      log: testLog,
      brokerUpForMs: () => brokerUpForMs,
      options: { intervalMs: 1000, graceMs: 20, windowMs: 3600_000, batchSize: 10 },
    });
    // Broker down (0), then back for less than the grace: the job is left to its submitter.
    expect(await task.run(new AbortController().signal)).toMatchObject({ refunded: 0 });
    brokerUpForMs = 10;
    expect(await task.run(new AbortController().signal)).toMatchObject({ refunded: 0 });
    expect(await rowStatus(jobId!)).toBe('queued');
    // Back for the whole grace: a job still unconfirmed now has no live submitter; refunded.
    brokerUpForMs = 20;
    expect(await task.run(new AbortController().signal)).toMatchObject({ refunded: 1 });
    expect(await rowStatus(jobId!)).toBe('failed');
    await r.stop();
  });

  it('record events lost after a committed outcome are re-sent from the result row', async () => {
    let fail = true;
    const got: RecordEventInput[] = [];
    const r = await rig({
      publishRecords: async (e) => {
        if (fail) throw new Error('record stream down');
        got.push(...e);
      },
    });
    const s = await submitOne(r);
    await r.jobs.handle(r.sent[0]!);
    fail = false;
    const task = createRecentJobsTask({
      pool: env.pg.pool,
      jobs: r.jobs,
      log: testLog,
      records: { publish: async (e) => void got.push(...e) },
      options: { intervalMs: 1000, graceMs: 0, windowMs: 3600_000, batchSize: 10 },
    });
    expect(await task.run(new AbortController().signal)).toMatchObject({ reemitted: 1 });
    expect(got.filter((e) => e.jobId === s.jobId).map((e) => e.type)).toEqual([
      'job.submitted',
      'job.finished',
    ]);
    expect(got.find((e) => e.type === 'job.finished')).toMatchObject({ status: 'succeeded' });
    expect(await task.run(new AbortController().signal)).toMatchObject({ reemitted: 0 });
    await r.stop();
  });
});

describe('never on two nodes at once', () => {
  it('a copy of a job whose lease another delivery holds waits it out and is dropped when that delivery ends', async () => {
    const r = await rig({});
    const s = await submitOne(r);
    const m = r.sent[0]!;
    // Another process's dispatch holds the job's lease and is running it.
    const other = await r.nodes.matchmaking.selectAndLease({
      jobId: s.jobId,
      environment: 'testnet',
      model: 'm1',
    });
    expect(other).toBeDefined();
    const copy = r.jobs.handle(m);
    await new Promise((res) => setTimeout(res, 400));
    expect(r.runs).toEqual([]); // before: taken over at once and run again
    await r.nodes.matchmaking.complete(other!, 'ok');
    expect(await copy).toEqual({ kind: 'done' });
    expect(r.runs).toEqual([]);
    await r.stop();
  });

  it('an "already delivered" refusal waits for the earlier delivery, then runs on the same node; no attempt is burnt', async () => {
    const r = await rig({
      jobTimeoutMs: 300,
      executor: async (lease, job, n) => {
        if (n === 1) throw new Error(`job ${job.jobId} is already delivered to ${lease.nodeAddress}`);
        return { tokensIn: 1, tokensOut: 1, output: 'late' };
      },
    });
    const s = await submitOne(r);
    expect(await r.jobs.handle(r.sent[0]!)).toEqual({ kind: 'done' });
    expect(r.runs).toHaveLength(2);
    expect(r.runs[1]).toBe(r.runs[0]);
    expect(await rowStatus(s.jobId)).toBe('succeeded');
    await r.stop();
  });

  it('a backbone-side failure carries its cause and leaves the node eligible for the retry', async () => {
    const r = await rig({
      executor: async (lease) => {
        throw new Error(`node ${lease.nodeAddress} is not connected to any gateway`);
      },
    });
    await submitOne(r);
    const out = await r.jobs.handle(r.sent[0]!);
    expect(out).toMatchObject({ kind: 'failed', cause: 'backbone_unreachable' });
    await r.stop();
  });
});
