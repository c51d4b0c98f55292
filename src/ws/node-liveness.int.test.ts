// Eligibility needs a live gateway session (issue 16 item 2), on a real backbone (PostgreSQL, Redis, RabbitMQ,
// Mongo) with real sockets: ghost nodes that only heartbeat (healthy, capacity 1024) get no job and cause no
// retry; a node whose socket closed stops getting jobs at once; a node whose socket stays open but goes silent
// (no frames, no pongs) stops getting jobs within NODE_SESSION_LIVENESS_MS, while it stays online for status.
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import {
  bindNodes,
  fundedNamespace,
  gatewayOverrides,
  MODEL,
  newAgent,
  submitChat,
  waitTerminal,
} from '../../test/gateway-harness.js';
import { waitFor } from '../../test/routing-fixtures.js';
import type { RunningServer } from '../app/serve.js';
import type { NodeAgent, NodeAgentOptions } from '../agent/node-agent.js';
import type { Heartbeat } from '../modules/nodes/index.js';

/** The liveness bound under test (short, so that the silent-socket case runs in seconds). */
const LIVENESS_MS = 1_500;

let stores: TestStores;
let server: RunningServer;
let agents: NodeAgent[] = [];
let timers: NodeJS.Timeout[] = [];

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, {
    overrides: { ...gatewayOverrides, NODE_SESSION_LIVENESS_MS: LIVENESS_MS },
  });
});
afterEach(async () => {
  timers.forEach((t) => clearInterval(t));
  timers = [];
  await Promise.all(agents.map((a) => a.stop()));
  agents = [];
});
afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

function agent(over: Partial<NodeAgentOptions> = {}): NodeAgent {
  const a = newAgent(server, over);
  agents.push(a);
  return a;
}

/** Signed HTTP heartbeats saying "healthy" for the agent's key every 300 ms, whatever its socket does. */
async function beatHealthy(a: NodeAgent, capacity: number): Promise<void> {
  let ts = Date.now();
  const beat = async () => {
    const hb: Heartbeat = {
      version: 1,
      address: a.address,
      timestampMs: (ts = Math.max(ts + 1, Date.now())),
      environment: 'testnet',
      region: 'eu',
      software: { agent: 'ghost/1' },
      gpu: { model: 'sim-gpu', memoryMb: 24_576, count: 1 },
      configDigest: '',
      models: [{ name: MODEL, version: 'v1', active: true }],
      capacity,
      load: 0,
      health: 'ok',
      quality: 1,
      latencyMs: 0,
    };
    const r = await a.post('/v1/nodes/heartbeat', 'node.heartbeat', hb);
    expect(r.status).toBe(200);
  };
  await beat();
  timers.push(setInterval(() => void beat().catch(() => undefined), 300));
}

/** A ghost: registered and bound, heartbeating "healthy, capacity 1024" over HTTP, never opening the socket. */
async function startGhost(): Promise<NodeAgent> {
  const g = agent();
  await bindNodes(server.backbone, [g.address]);
  const reg = await g.post('/v1/nodes/register', 'node.register', {
    environment: 'testnet',
    region: 'eu',
    gpuModel: 'sim-gpu',
    gpuMemoryMb: 24_576,
  });
  expect(reg.status).toBe(200);
  await beatHealthy(g, 1024);
  return g;
}

async function startConnected(n: number, over: Partial<NodeAgentOptions> = {}): Promise<NodeAgent[]> {
  const list = Array.from({ length: n }, () => agent(over));
  await bindNodes(
    server.backbone,
    list.map((a) => a.address),
  );
  await Promise.all(list.map((a) => a.start()));
  return list;
}

async function runJobs(ns: string, n: number): Promise<Array<{ node: string | null; attempts: number }>> {
  const b = server.backbone;
  const ids: string[] = [];
  for (let i = 0; i < n; i += 1) ids.push(await submitChat(b, ns, `liveness job ${i}`));
  const out = [];
  for (const id of ids) {
    expect(await waitTerminal(b, ns, id)).toBe('succeeded');
    const row = (await b.jobs.getJob(ns, id))!.row;
    out.push({ node: row.nodeAddress, attempts: row.attempts });
  }
  return out;
}

describe('eligibility needs a live gateway session', () => {
  it('ghost nodes (heartbeat only) get no job and cause no retry; connected nodes serve every job', async () => {
    const b = server.backbone;
    const ghosts = await Promise.all([startGhost(), startGhost(), startGhost()]);
    const connected = await startConnected(2);
    // Online for status (their heartbeats are in), not dispatchable (no session).
    for (const g of ghosts) {
      expect((await b.nodes.presence.viewNode('testnet', g.address, 'admin')).online).toBe(true);
      expect(await b.nodes.live.sessionLive('testnet', g.address)).toBe(false);
    }
    for (const a of connected) expect(await b.nodes.live.sessionLive('testnet', a.address)).toBe(true);
    const jobs = await runJobs(await fundedNamespace(b), 20);
    const ghostSet = new Set(ghosts.map((g) => g.address));
    expect(jobs.filter((j) => ghostSet.has(j.node ?? ''))).toEqual([]);
    expect(jobs.every((j) => j.attempts === 1)).toBe(true);
    expect(connected.reduce((n, a) => n + a.counters.results, 0)).toBe(20);
  });

  it('a node whose socket closed stops getting jobs at once (before its heartbeat says so)', async () => {
    const b = server.backbone;
    // No reconnect and no heartbeat of its own during the test: the test heartbeats it as healthy instead.
    const [gone] = await startConnected(1, { reconnectDelayMs: 600_000, heartbeatIntervalMs: 600_000 });
    const [stays] = await startConnected(1);
    const closed = new Promise<void>((resolve) => gone!.socket!.once('close', () => resolve()));
    gone!.dropSocket();
    await closed;
    const t0 = Date.now();
    await waitFor(
      'closed session dropped',
      () => b.nodes.live.sessionLive('testnet', gone!.address).then((l) => !l),
      2_000,
    );
    // The gateway drops the claim when it sees the close: one Redis round trip, far below the bound.
    expect(Date.now() - t0).toBeLessThan(LIVENESS_MS);
    // After the agent's own last heartbeat ("unhealthy", sent at the close), healthy ones: only the session is missing.
    await new Promise((r) => setTimeout(r, 200));
    await beatHealthy(gone!, 4);
    const view = await b.nodes.presence.viewNode('testnet', gone!.address, 'admin');
    expect([view.online, view.status?.health]).toEqual([true, 'ok']);
    const before = gone!.counters.jobs;
    const jobs = await runJobs(await fundedNamespace(b), 10);
    expect(jobs.every((j) => j.node === stays!.address && j.attempts === 1)).toBe(true);
    expect(gone!.counters.jobs).toBe(before);
  });

  it('a silent socket (no frames, no pongs) stops getting jobs within NODE_SESSION_LIVENESS_MS; it stays online', async () => {
    const b = server.backbone;
    const [silent] = await startConnected(1);
    const [stays] = await startConnected(1);
    // The agent keeps heartbeating over HTTP (healthy: its socket is not closed) while the socket reads nothing,
    // as a hung agent or a half-open link would.
    const wsInternal = silent!.socket as unknown as { _socket: Socket };
    const paused = Date.now();
    wsInternal._socket.pause();
    await waitFor(
      'silent session lapsed',
      () => b.nodes.live.sessionLive('testnet', silent!.address).then((l) => !l),
      LIVENESS_MS * 3,
    );
    const lapsedAfter = Date.now() - paused;
    // Its last pong was at most one ping interval (L/3) before the pause; the claim ran until that pong + L.
    expect(lapsedAfter).toBeLessThanOrEqual(LIVENESS_MS + 300);
    expect((await b.nodes.presence.viewNode('testnet', silent!.address, 'admin')).online).toBe(true);
    const before = silent!.counters.jobs;
    const jobs = await runJobs(await fundedNamespace(b), 10);
    expect(jobs.every((j) => j.node === stays!.address && j.attempts === 1)).toBe(true);
    expect(silent!.counters.jobs).toBe(before);
    wsInternal._socket.resume();
  });
});
