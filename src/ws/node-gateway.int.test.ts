// The node gateway over real sockets on a real backbone (PostgreSQL, Redis, RabbitMQ, Mongo): jobs complete
// end to end over WebSocket, a node killed mid-job hands its job to another node (settled once), results
// from a node not holding the lease are refused, and bad hellos are refused with their reason.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import {
  bindNodes,
  fundedNamespace,
  gatewayOverrides,
  jobMessage,
  newAgent,
  settleCount,
  submitChat,
  waitTerminal,
} from '../../test/gateway-harness.js';
import { gate, waitFor } from '../../test/routing-fixtures.js';
import type { RunningServer } from '../app/serve.js';
import { RedisKeys } from '../stores/redis/keys.js';
import { signNodeMessage } from '../modules/network/index.js';
import type { NodeAgent, NodeAgentOptions } from '../agent/node-agent.js';
import { runBuiltin } from '../agent/node-runtime.js';
import { NODE_WS_PATH, type ErrorFrame } from '../modules/network/index.js';

let stores: TestStores;
let server: RunningServer;
let agents: NodeAgent[] = [];

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, { overrides: gatewayOverrides });
});
afterEach(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  agents = [];
});
afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

async function startAgents(n: number, over: Partial<NodeAgentOptions> = {}): Promise<NodeAgent[]> {
  const list = Array.from({ length: n }, () => newAgent(server, over));
  agents.push(...list);
  await bindNodes(
    server.backbone,
    list.map((a) => a.address),
  );
  await Promise.all(list.map((a) => a.start()));
  return list;
}

/**
 * Opens a raw socket and sends one frame; resolves with the first error frame and the close code, or
 * with `ok` when the gateway greets it (then the test closes the socket).
 */
async function rawHello(frame: unknown): Promise<{ ok?: true; error?: ErrorFrame; code?: number }> {
  const ws = new WebSocket(new URL(NODE_WS_PATH, server.url.replace(/^http/, 'ws')));
  let error: ErrorFrame | undefined;
  const greeted = new Promise<true>((resolve) =>
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as ErrorFrame | { type: 'hello.ok' };
      if (f.type === 'hello.ok') resolve(true);
      if (f.type === 'error') error ??= f;
    }),
  );
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  ws.send(JSON.stringify(frame));
  const closed = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
  const first = await Promise.race([greeted, closed]);
  if (first === true) {
    ws.close();
    await closed;
    return { ok: true };
  }
  return { ...(error ? { error } : {}), code: first };
}

describe('node gateway', () => {
  it('jobs complete end to end over WebSocket with the built-in runtime output', async () => {
    const b = server.backbone;
    await startAgents(2);
    expect((await b.metrics.connectedNodes.get()).values[0]?.value).toBe(2);
    const ns = await fundedNamespace(b);
    const prompts = ['alpha beta gamma', 'one two', 'hello big world', 'x y z w'];
    const ids = await Promise.all(prompts.map((p) => submitChat(b, ns, p)));
    for (const [i, id] of ids.entries()) {
      expect(await waitTerminal(b, ns, id)).toBe('succeeded');
      const job = await b.jobs.getJob(ns, id);
      const expected = runBuiltin('llama3-8b', {
        kind: 'chat',
        body: { messages: [{ role: 'user', content: prompts[i] }] },
        maxTokens: 16,
      });
      expect(job?.result?.output?.text).toBe(expected.output);
      expect(job?.result?.usage).toEqual({
        promptTokens: expected.tokensIn,
        completionTokens: expected.tokensOut,
      });
      expect(await settleCount(b, id)).toBe(1);
    }
    const latency = await b.metrics.dispatchLatency.get();
    expect(latency.values.find((v) => v.metricName?.endsWith('_count'))?.value).toBeGreaterThanOrEqual(4);
  });

  it('a node killed mid-job: the job is retried on another node and settled exactly once', async () => {
    const b = server.backbone;
    const list = await startAgents(2);
    let killed: string | undefined;
    for (const a of list)
      a.onFrame((f) => {
        if (f.type === 'job' && !killed) {
          killed = a.address;
          a.dropSocket();
        }
      });
    const ns = await fundedNamespace(b);
    const id = await submitChat(b, ns);
    // JOB_ATTEMPT_TIMEOUT_MS is 30 s and this wait is bounded below it plus retries: the disconnect
    // itself must fail the attempt.
    expect(await waitTerminal(b, ns, id, 25_000)).toBe('succeeded');
    const job = await b.jobs.getJob(ns, id);
    expect(killed).toBeDefined();
    expect(job?.row.nodeAddress).not.toBe(killed);
    expect(job?.row.attempts).toBeGreaterThanOrEqual(2);
    expect(await settleCount(b, id)).toBe(1);
  });

  it('a result for a job the node does not hold (wrong job, wrong fencing token) is refused and changes nothing', async () => {
    const b = server.backbone;
    // Whichever node gets the job holds it until the test opens the gate.
    const hold = gate();
    const [holder, other] = await startAgents(2, { beforeRun: () => hold.promise });
    const frames: Array<{ agent: NodeAgent; jobId: string; token: string }> = [];
    for (const a of [holder!, other!])
      a.onFrame((f) => {
        if (f.type === 'job') frames.push({ agent: a, jobId: f.jobId, token: f.fencingToken });
      });
    const ns = await fundedNamespace(b);
    const id = await submitChat(b, ns, 'forge me');
    await waitFor('job frame', () => frames.length > 0);
    const { agent: real, token } = frames[0]!;
    const stranger = real === holder ? other! : holder!;
    const refused: ErrorFrame[] = [];
    stranger.onFrame((f) => f.type === 'error' && refused.push(f));
    real.onFrame((f) => f.type === 'error' && refused.push(f));
    const forged = { tokensIn: 1, tokensOut: 1, output: 'forged' };
    // Another node claims the job with the right token; the holder with a wrong token and a wrong job id.
    stranger.sendRaw(
      await signNodeMessage(stranger.account, 'job.result', { jobId: id, fencingToken: token, ...forged }),
    );
    real.sendRaw(
      await signNodeMessage(real.account, 'job.result', { jobId: id, fencingToken: `${token}9`, ...forged }),
    );
    real.sendRaw(
      await signNodeMessage(real.account, 'job.result', {
        jobId: '00000000-0000-4000-8000-000000000000',
        fencingToken: token,
        ...forged,
      }),
    );
    await waitFor('three refusals', () => refused.length >= 3);
    expect(refused.map((f) => f.reason)).toEqual([
      'not_lease_holder',
      'not_lease_holder',
      'not_lease_holder',
    ]);
    expect((await b.jobs.getJob(ns, id))?.row.status).toBe('dispatched');
    expect(await settleCount(b, id)).toBe(0);
    hold.open();
    expect(await waitTerminal(b, ns, id)).toBe('succeeded');
    const job = await b.jobs.getJob(ns, id);
    expect(job?.result?.output?.text).toBe('me forge');
    expect(job?.row.nodeAddress).toBe(real.address);
    expect(await settleCount(b, id)).toBe(1);
    // A replay of the real (already accepted) result is refused too and changes nothing.
    const replay = await signNodeMessage(real.account, 'job.result', {
      jobId: id,
      fencingToken: token,
      ...forged,
    });
    real.sendRaw(replay);
    await waitFor('replay refused', () => refused.length >= 4);
    expect(refused[3]!.reason).toBe('not_lease_holder');
    expect(await settleCount(b, id)).toBe(1);
    expect((await b.jobs.getJob(ns, id))?.result?.output?.text).toBe('me forge');
  });

  it('refuses hellos with a bad signature, a stale timestamp, a replayed nonce, or from an unbound node', async () => {
    const b = server.backbone;
    const bound = privateKeyToAccount(generatePrivateKey());
    await bindNodes(b, [bound.address.toLowerCase()]);
    const hello = { environment: 'testnet' };
    const good = await signNodeMessage(bound, 'node.hello', hello);

    const bad = await rawHello({ ...good, body: { environment: 'mainnet' } });
    expect(bad.error?.reason).toBe('bad_signature');
    expect(bad.code).toBe(4001);

    const stale = await rawHello(
      await signNodeMessage(bound, 'node.hello', hello, { ts: Date.now() - 10 * 60_000 }),
    );
    expect(stale.error?.reason).toBe('stale_timestamp');

    const first = await rawHello(good);
    expect(first.ok).toBe(true);
    const replay = await rawHello(good);
    expect(replay.error?.reason).toBe('replayed_nonce');

    const stranger = privateKeyToAccount(generatePrivateKey());
    const unbound = await rawHello(await signNodeMessage(stranger, 'node.hello', hello));
    expect(unbound.error?.reason).toBe('node_not_registered');
    expect(unbound.code).toBe(4003);

    const noHello = await rawHello(await signNodeMessage(bound, 'job.result', {}));
    expect(noHello.error?.reason).toBe('hello_required');

    const rejected = await b.metrics.nodeMessagesRejected.get();
    const byReason = Object.fromEntries(rejected.values.map((v) => [v.labels.reason, v.value]));
    for (const r of ['bad_signature', 'stale_timestamp', 'replayed_nonce', 'node_not_registered'])
      expect(byReason[r]).toBeGreaterThanOrEqual(1);
  });

  it('refuses job messages with a bad signature, a stale timestamp, a replayed nonce or another node key', async () => {
    const [agent] = await startAgents(1);
    const refused: ErrorFrame[] = [];
    agent!.onFrame((f) => f.type === 'error' && refused.push(f));
    const body = { jobId: '00000000-0000-4000-8000-000000000001', fencingToken: '1', reason: 'x' };
    const m = await signNodeMessage(agent!.account, 'job.error', body);
    agent!.sendRaw({ ...m, nonce: `${m.nonce}Z` });
    agent!.sendRaw(await signNodeMessage(agent!.account, 'job.error', body, { ts: Date.now() - 3_600_000 }));
    agent!.sendRaw(m);
    await waitFor('three refusals', () => refused.length >= 3);
    agent!.sendRaw(m);
    await waitFor('four refusals', () => refused.length >= 4);
    agent!.sendRaw(await signNodeMessage(privateKeyToAccount(generatePrivateKey()), 'job.error', body));
    await waitFor('five refusals', () => refused.length >= 5);
    expect(refused.map((f) => f.reason).sort()).toEqual(
      ['bad_signature', 'stale_timestamp', 'not_lease_holder', 'replayed_nonce', 'wrong_node'].sort(),
    );
    expect(agent!.connected).toBe(true); // refusals of job messages do not end the session
  });

  it('a stopping process closes its node sockets with 1001 and releases their ownership', async () => {
    const other = await startTestServer(stores, { roles: 'io', overrides: gatewayOverrides });
    try {
      const agent = newAgent(other);
      agents.push(agent);
      await bindNodes(other.backbone, [agent.address]);
      await agent.start();
      const keys = new RedisKeys(other.backbone.config.REDIS_KEY_PREFIX);
      expect(await other.backbone.redis.get(keys.nodeGateway(agent.address))).toBe(other.backbone.instanceId);
      const code = new Promise<number>((resolve) => agent.socket!.once('close', (c) => resolve(c)));
      await other.stop();
      expect(await code).toBe(1001);
      expect(await server.backbone.redis.get(keys.nodeGateway(agent.address))).toBeNull();
    } finally {
      await other.stop();
    }
  });

  it('backpressure: beyond WS_MAX_IN_FLIGHT_PER_NODE a delivery is refused at once; a disconnect rejects the pending ones', async () => {
    const other = await startTestServer(stores, {
      roles: 'io',
      overrides: { ...gatewayOverrides, WS_MAX_IN_FLIGHT_PER_NODE: 2 },
    });
    const hold = gate();
    try {
      const agent = newAgent(other, { beforeRun: () => hold.promise });
      agents.push(agent);
      await bindNodes(other.backbone, [agent.address]);
      await agent.start();
      const signal = new AbortController().signal;
      const deliver = () => {
        const job = jobMessage();
        const lease = {
          jobId: job.jobId,
          environment: 'testnet' as const,
          nodeAddress: agent.address,
          fencingToken: '7',
          expiresAtMs: Date.now() + 60_000,
        };
        return other.gateway.run(lease, job, signal);
      };
      const pending = [deliver(), deliver()];
      pending.forEach((p) => p.catch(() => undefined));
      await expect(deliver()).rejects.toThrow(/2 jobs in flight/);
      await waitFor('both jobs on the node', () => agent.counters.jobs === 2);
      agent.dropSocket();
      for (const p of pending) await expect(p).rejects.toThrow(/disconnected/);
    } finally {
      hold.open();
      await other.stop();
    }
  });
});
