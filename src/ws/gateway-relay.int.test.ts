// Two backbone processes on the same stores, nodes connected to only one of them: jobs the other process
// consumes are relayed over Redis pub/sub and complete, each dispatched once; a node with no gateway, or
// whose gateway is gone, is refused at once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import {
  bindNodes,
  fundedNamespace,
  gatewayOverrides,
  jobMessage,
  MODEL,
  newAgent,
  settleCount,
  submitChat,
  waitTerminal,
} from '../../test/gateway-harness.js';
import { causeOf } from '../modules/jobs/jobs.attempt.js';
import { RedisKeys } from '../stores/redis/keys.js';
import type { RunningServer } from '../app/serve.js';
import type { NodeAgent } from '../agent/node-agent.js';

let stores: TestStores;
let a: RunningServer;
let b: RunningServer;
let agents: NodeAgent[] = [];
/** Jobs whose prompt is `hang` are held by the node until released here (bounded by the test's own end). */
const hung = new Set<() => void>();
const hang = (job: { request?: { body?: unknown } }) =>
  (job.request?.body as { prompt?: string } | undefined)?.prompt === 'hang'
    ? new Promise<void>((resolve) => {
        hung.add(resolve);
        setTimeout(resolve, 10_000).unref();
      })
    : Promise.resolve();

beforeAll(async () => {
  stores = await createTestStores();
  a = await startTestServer(stores, { overrides: gatewayOverrides });
  b = await startTestServer(stores, { roles: 'io', overrides: gatewayOverrides });
  agents = [newAgent(a, { beforeRun: hang }), newAgent(a, { beforeRun: hang })];
  await bindNodes(
    a.backbone,
    agents.map((x) => x.address),
  );
  await Promise.all(agents.map((x) => x.start()));
});
afterAll(async () => {
  hung.forEach((release) => release());
  await Promise.all(agents.map((x) => x.stop()));
  await b?.stop();
  await a?.stop();
  await stores?.drop();
});

describe('gateway relay between processes', () => {
  it('a delivery for a node on another process is relayed there and its result comes back', async () => {
    const job = jobMessage();
    const lease = await b.backbone.nodes.matchmaking.selectAndLease({
      jobId: job.jobId,
      environment: 'testnet',
      model: MODEL,
    });
    expect(lease).toBeDefined();
    const result = await b.gateway.run(lease!, job, new AbortController().signal);
    expect(result).toMatchObject({ output: 'please me relay', tokensIn: 3, tokensOut: 3 });
    await b.backbone.nodes.matchmaking.complete(lease!, 'ok');
    expect(b.gateway.stats.relayedOut).toBeGreaterThanOrEqual(1);
    expect(a.gateway.stats.relayedIn).toBeGreaterThanOrEqual(1);
  });

  it('a cancel from another process reaches the node (broadcast) and the cut result comes back through the relay', async () => {
    const job = jobMessage('hang');
    const lease = await b.backbone.nodes.matchmaking.selectAndLease({
      jobId: job.jobId,
      environment: 'testnet',
      model: MODEL,
    });
    const running = b.gateway.run(lease!, job, new AbortController().signal);
    const agent = agents.find((x) => x.address === lease!.nodeAddress)!;
    for (let i = 0; i < 100 && !agent.jobFrames.some((f) => f.jobId === job.jobId); i += 1)
      await new Promise((r) => setTimeout(r, 20));
    const told = new Promise<void>((resolve) =>
      agent.onFrame((f) => f.type === 'job.cancel' && f.jobId === job.jobId && resolve()),
    );
    // b holds no socket of that node: the cancel goes out on the broadcast channel, and a's session cuts it.
    await b.gateway.cancel(job.jobId, 0);
    await told;
    hung.forEach((release) => release());
    expect(await running).toMatchObject({ cancelled: true, output: '', tokensOut: 0, tokensIn: 1 });
    expect(agent.cancelledJobs).toContain(job.jobId);
    expect(b.gateway.stats.relayedOut).toBeGreaterThanOrEqual(1);
    await b.backbone.nodes.matchmaking.complete(lease!, 'ok');
  });

  it('jobs consumed by the process without nodes complete through the relay, each dispatched once', async () => {
    const ns = await fundedNamespace(a.backbone);
    const ids: string[] = [];
    const relayedBefore = b.gateway.stats.relayedOut;
    // Both processes consume; submit in small batches until the node-less one has relayed some (bounded).
    for (let batch = 0; batch < 6 && b.gateway.stats.relayedOut === relayedBefore; batch += 1) {
      const batchIds = await Promise.all(
        Array.from({ length: 6 }, (_, i) => submitChat(a.backbone, ns, `batch ${batch} job ${i}`)),
      );
      for (const id of batchIds) expect(await waitTerminal(a.backbone, ns, id)).toBe('succeeded');
      ids.push(...batchIds);
    }
    expect(b.gateway.stats.relayedOut).toBeGreaterThan(relayedBefore);
    const delivered = agents.flatMap((x) => x.jobFrames.map((f) => f.jobId)).filter((id) => ids.includes(id));
    expect(delivered.sort()).toEqual([...ids].sort()); // every job reached a node exactly once
    for (const id of ids) {
      expect(await settleCount(a.backbone, id)).toBe(1);
      expect((await a.backbone.jobs.getJob(ns, id))?.row.attempts).toBe(1);
    }
  });

  it('refuses at once a node with no gateway, or whose gateway process is gone', async () => {
    const job = jobMessage();
    const lease = {
      jobId: job.jobId,
      environment: 'testnet' as const,
      nodeAddress: `0x${'ab'.repeat(20)}`,
      fencingToken: '1',
      expiresAtMs: Date.now() + 60_000,
    };
    const signal = new AbortController().signal;
    await expect(b.gateway.run(lease, job, signal)).rejects.toThrow(/not connected to any gateway/);
    const keys = new RedisKeys(b.backbone.config.REDIS_KEY_PREFIX);
    await b.backbone.redis.set(keys.nodeGateway(lease.nodeAddress), 'gone-process', 'PX', 60_000);
    await expect(b.gateway.run(lease, job, signal)).rejects.toThrow(/unreachable/);
  });

  it('a relay that outlived a drop of its pub/sub connection fails as ours, not as the node timing out', async () => {
    const relayHung = async (dropSubscriber: boolean) => {
      const job = jobMessage('hang');
      const lease = await b.backbone.nodes.matchmaking.selectAndLease({
        jobId: job.jobId,
        environment: 'testnet',
        model: MODEL,
      });
      expect(lease).toBeDefined();
      const ac = new AbortController();
      const outcome = b.gateway.run(lease!, job, ac.signal).catch((err: unknown) => err);
      await expect
        .poll(() => agents.some((x) => x.jobFrames.some((f) => f.jobId === job.jobId)), { timeout: 5_000 })
        .toBe(true);
      if (dropSubscriber) {
        // Only this process's pub/sub connection is cut (by its own address); it reconnects by itself.
        const sub = b.backbone.subscriber;
        const port = sub.stream.localPort;
        await b.backbone.redis.call('CLIENT', 'KILL', 'ADDR', `127.0.0.1:${port}`);
        await expect
          .poll(() => sub.status === 'ready' && sub.stream.localPort !== port, { timeout: 5_000 })
          .toBe(true);
      }
      ac.abort();
      const err = await outcome;
      hung.forEach((release) => release());
      await b.backbone.nodes.matchmaking.complete(lease!, 'ok').catch(() => undefined);
      return causeOf(err);
    };
    // Silence with the connection up: the owner relays the node's own outcome, so this is the node timing out.
    expect(await relayHung(false)).toBe('node_timeout');
    // Silence across a drop: the answer may have been published while nobody listened.
    expect(await relayHung(true)).toBe('backbone_unreachable');
  });
});
