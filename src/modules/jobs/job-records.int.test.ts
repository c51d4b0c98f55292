// The record events the job flow emits, on the real PostgreSQL and Redis (the broker is a plain fake of the
// routing port, the record sink a plain array): one job.finished per job that carries its submission (input,
// key, priority) and routing history, no job.submitted / job.assigned events, and no job.completed message.
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
import type { JobMessage, RoutingService } from '../routing/index.js';
import type { RecordEventInput } from '../records/index.js';
import { JobsService } from './index.js';

const env = useLiveStores('job-records');

async function rig(fail = false) {
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
  const events: RecordEventInput[] = [];
  const lifecycle: string[] = [];
  const routing = {
    submit: async (m: JobMessage) => void sent.push(m),
    publishEvent: async (type: string) => void lifecycle.push(type),
  } as unknown as RoutingService;
  const jobs = new JobsService({
    pool: env.pg.pool,
    ledger,
    routing,
    matchmaking: nodes.matchmaking,
    executor: {
      run: async (_lease, job) => {
        if (fail) throw new Error('node blew up');
        return { tokensIn: 10, tokensOut: 20, output: `out ${job.jobId}` };
      },
    },
    log: testLog,
    records: { publish: async (e) => void events.push(...e) },
    options: { pricePerTokenMicro: 100n, nodeSharePercent: 80n, maxAttempts: 3, jobTimeoutMs: 5_000 },
  });
  const submit = () =>
    jobs.submit({
      namespaceId: ns!.id,
      model: 'm1',
      environment: 'testnet',
      priority: 'bulk',
      maxTokens: 100,
      ttlMs: 60_000,
      request: {
        kind: 'chat',
        body: { messages: [{ role: 'user', content: 'Say hello' }], temperature: 0.5 },
        maxTokens: 100,
      },
    });
  const stop = async () => {
    await jobs.stop();
    await ledger.stop();
  };
  return { jobs, node, sent, events, lifecycle, submit, stop };
}

const finishedOf = (events: RecordEventInput[], jobId: string) =>
  events.filter((e) => e.jobId === jobId) as Array<Extract<RecordEventInput, { type: 'job.finished' }>>;

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i += 1) await new Promise((r) => setTimeout(r, 10));
}

describe('job record events', () => {
  it('a succeeded job emits one job.finished carrying its input, and no submitted, assigned or completed', async () => {
    const r = await rig();
    const s = await r.submit();
    expect(r.events).toEqual([]);
    await r.jobs.handle(r.sent[0]!);
    await until(() => r.events.length > 0);
    const mine = finishedOf(r.events, s.jobId);
    expect(mine.map((e) => e.type)).toEqual(['job.finished']);
    expect(mine[0]).toMatchObject({
      status: 'succeeded',
      nodeAddress: r.node,
      attempts: 1,
      costMicro: '3000',
      output: { text: `out ${s.jobId}`, tokensIn: 10, tokensOut: 20 },
      submitted: {
        at: s.createdAt.toISOString(),
        apiKeyId: null,
        priority: 'bulk',
        input: { messages: [{ role: 'user', content: 'Say hello' }], params: { temperature: 0.5 } },
      },
    });
    expect(mine[0]!.assignedAt).toEqual(expect.any(String));
    expect(mine[0]!.history).toBeUndefined();
    expect(r.lifecycle).toEqual([]);
    await r.stop();
  });

  it('a job cancelled before it ran (sync timeout) still carries its input in its one finished event', async () => {
    const r = await rig();
    const s = await r.submit();
    expect(
      await r.jobs.cancel(r.sent[0]!.namespaceId, s.jobId, 'the sync request timed out', {
        createdAt: s.createdAt,
        model: 'm1',
      }),
    ).toBe('cancelled');
    await until(() => r.events.length > 0);
    const mine = finishedOf(r.events, s.jobId);
    expect(mine.map((e) => e.type)).toEqual(['job.finished']);
    expect(mine[0]).toMatchObject({
      status: 'cancelled',
      code: 'cancelled',
      submitted: { priority: 'bulk', input: { messages: [{ role: 'user', content: 'Say hello' }] } },
    });
    await r.stop();
  });

  it('a job failing its last attempt carries its routing history, error code and cause', async () => {
    const r = await rig(true);
    const s = await r.submit();
    const at = new Date().toISOString();
    const m: JobMessage = {
      ...r.sent[0]!,
      attempt: 2,
      failures: [
        { attempt: 1, reason: 'node timed out', cause: 'node_timeout', nodeId: randomAddress(), at },
        { attempt: 2, reason: 'node disconnected', cause: 'node_disconnect', at },
      ],
    };
    await r.jobs.handle(m);
    await until(() => r.events.some((e) => e.type === 'job.finished'));
    const types = r.events.filter((e) => e.jobId === s.jobId).map((e) => e.type);
    expect(types.sort()).toEqual(['job.fallback', 'job.finished']);
    const f = finishedOf(r.events, s.jobId).find((e) => e.type === 'job.finished')!;
    expect(f).toMatchObject({
      status: 'failed',
      code: 'job_failed',
      cause: 'node_error',
      attempts: 3,
      history: [
        { attempt: 1, nodeAddress: m.failures[0]!.nodeId, reason: 'node timed out', cause: 'node_timeout' },
        { attempt: 2, nodeAddress: null, reason: 'node disconnected', cause: 'node_disconnect' },
      ],
      submitted: { input: { messages: [{ role: 'user', content: 'Say hello' }] } },
    });
    await r.stop();
  });
});
