// Redis losing its data (FLUSHALL, then kill -9 and a fresh start) under a serving backbone, on a
// redis-server of this suite's own: the model catalog is back at once (rebuilt from the heartbeats heard
// here and PostgreSQL, not at the next heartbeat, which is a minute away here), a miss meanwhile is a
// retryable catalog_recovering (503), gateway ownership is re-asserted at once, and no process crashes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../backbone-harness.js';
import { testLog } from '../harness.js';
import { parseSimOptions, startSim, type RunningSim } from '../../src/cli/commands/sim.js';
import { isAppError } from '../../src/platform/errors.js';
import type { RunningServer } from '../../src/app/serve.js';
import { RedisKeys } from '../../src/stores/redis/keys.js';
import { startOwnRedis, type OwnRedis } from './servers.js';
import { Redis } from 'ioredis';

const ADMIN_TOKEN = 'redis-loss-admin-token';
const MODEL = 'llama3-8b';
let redisServer: OwnRedis;
let stores: TestStores;
let server: RunningServer;
let sim: RunningSim;
let probe: Redis;
const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  redisServer = await startOwnRedis();
  stores = await createTestStores();
  server = await startTestServer(stores, {
    overrides: {
      REDIS_URL: redisServer.url,
      ADMIN_TOKEN,
      // Heartbeats a minute apart: whatever comes back within seconds was rebuilt, not re-reported.
      HEARTBEAT_INTERVAL_MS: 60_000,
      HEARTBEAT_TTL_MS: 120_000,
    },
  });
  const opts = parseSimOptions(
    {
      url: server.url,
      nodes: '2',
      models: MODEL,
      environment: 'testnet',
      capacity: '2',
      latencyMs: '5',
      jitterMs: '0',
      failureRate: '0',
      disconnectRate: '0',
      slowRate: '0',
      skipBind: false,
      reportMs: '600000',
    },
    ADMIN_TOKEN,
  );
  sim = await startSim({ ...opts, heartbeatIntervalMs: 60_000 }, testLog);
  probe = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  probe.on('error', () => undefined);
}, 120_000);

afterAll(async () => {
  process.off('uncaughtException', onUncaught);
  await sim?.stop().catch(() => undefined);
  await server?.stop().catch(() => undefined);
  probe?.disconnect();
  await stores?.drop();
  await redisServer?.destroy();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const served = async () =>
  (await server.backbone.nodes.catalog.catalog('testnet')).some(
    (m) => m.model === MODEL && m.onlineNodes === 2,
  );

async function owners(): Promise<number> {
  const keys = new RedisKeys(server.backbone.config.REDIS_KEY_PREFIX);
  const n = await Promise.all(server.gateway.connectedNodes.map((a) => probe.get(keys.nodeGateway(a))));
  return n.filter((v) => v === server.backbone.instanceId).length;
}

describe('Redis data loss under a serving backbone', () => {
  it('after FLUSHALL the model is served at once (rebuilt from heartbeats heard and PostgreSQL)', async () => {
    await until('both nodes online', served);
    await until('both nodes connected', async () => server.gateway.connectedNodes.length === 2);
    await redisServer.flushAll();
    // The very next request finds the model: its miss checks for the loss and waits for the rebuild.
    const m = await server.backbone.nodes.catalog.requireServed('testnet', MODEL);
    expect(m.onlineNodes).toBe(2);
    // The gateway re-asserted ownership of its nodes as part of the recovery (its own refresh is 10 s away).
    await until('ownership re-asserted', async () => (await owners()) === 2, 3_000);
    // A model nobody serves is, during recovery, a retryable 503 rather than a 404.
    const err = await server.backbone.nodes.catalog.requireServed('testnet', 'no-such-model').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isAppError(err, 'catalog_recovering')).toBe(true);
    expect((err as { status: number }).status).toBe(503);
    expect((err as { retryable: boolean }).retryable).toBe(true);
  });

  it('after kill -9 and a fresh start of Redis the catalog and ownership come back within seconds', async () => {
    await redisServer.kill();
    await sleep(500);
    await redisServer.start();
    await until('the catalog rebuilt', served, 8_000);
    await until('ownership re-asserted', async () => (await owners()) === 2, 8_000);
    expect(uncaught).toEqual([]);
  });
});
