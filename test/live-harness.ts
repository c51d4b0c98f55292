// Live-state test fixtures: a nodes module over an isolated Redis space and PostgreSQL schema, and
// heartbeat builders.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import type { Config } from '../src/config/config.js';
import type { Environment } from '../src/config/vocabulary.js';
import { createNodesModule, type Heartbeat, type NodesModule } from '../src/modules/nodes/index.js';
import { baseConfig, createPgTestSchema, testLog, type PgTestSchema } from './harness.js';
import { createExclusiveRedisDb, createRedisTestSpace, type RedisTestSpace } from './redis-harness.js';
import type { Pool } from '../src/stores/postgres/pool.js';
import type { Redis } from 'ioredis';

/**
 * The stores of one live-state test file: a migrated PostgreSQL schema and a Redis key prefix (or, with
 * `exclusiveRedis`, a whole logical database of its own), created before its tests and dropped after them.
 */
export function useLiveStores(
  name: string,
  opts: { exclusiveRedis?: boolean } = {},
): { pg: PgTestSchema; space: RedisTestSpace } {
  const env = {} as { pg: PgTestSchema; space: RedisTestSpace };
  beforeAll(async () => {
    env.pg = await createPgTestSchema({ poolSize: 4 });
    env.space = opts.exclusiveRedis ? await createExclusiveRedisDb() : await createRedisTestSpace(name);
  });
  afterAll(async () => {
    await env.space?.drop();
    await env.pg?.drop();
  });
  return env;
}

export function randomAddress(): string {
  return `0x${randomBytes(20).toString('hex')}`;
}

export function liveConfig(prefix: string, overrides: Partial<Config> = {}): Config {
  return Object.freeze({ ...baseConfig, REDIS_KEY_PREFIX: prefix, ...overrides });
}

export function buildNodes(pool: Pool, redis: Redis, config: Config): NodesModule {
  return createNodesModule({ config, pool, redis, log: testLog });
}

let clock = Date.now();
/** Strictly increasing node timestamps across the test process. */
export function nextTimestamp(): number {
  clock = Math.max(clock + 1, Date.now());
  return clock;
}

export function heartbeat(address: string, over: Partial<Heartbeat> = {}): Heartbeat {
  return {
    version: 1,
    address,
    timestampMs: nextTimestamp(),
    environment: 'mainnet',
    region: 'eu',
    software: { agent: '1.0.0', runtime: 'vllm-0.6' },
    gpu: { model: 'A100', memoryMb: 81920, count: 1 },
    configDigest: 'sha256:abc',
    models: [{ name: 'llama3-8b', version: 'v1', active: true }],
    capacity: 2,
    load: 0,
    health: 'ok',
    quality: 0.9,
    latencyMs: 100,
    ...over,
  };
}

/** Registers many nodes in one statement. */
export async function registerNodes(
  pool: Pool,
  nodes: Array<{ address: string; environment: Environment }>,
): Promise<void> {
  await pool.query(
    `insert into nodes (address, environment) select * from unnest($1::text[], $2::text[])
     on conflict (address) do nothing`,
    [nodes.map((n) => n.address), nodes.map((n) => n.environment)],
  );
}

/**
 * Claims open gateway sessions for nodes (for an hour), as the node gateway does at a socket's hello: tests whose
 * executor is a fake of the gateway stand in for its session claims too (a node without one is not dispatchable).
 */
export async function openSessions(
  nodes: Pick<NodesModule, 'live'>,
  list: Array<{ address: string; environment: Environment }>,
): Promise<void> {
  await nodes.live.claimSessions(
    'open',
    'test-gateway',
    list.map((n) => ({ address: n.address, environment: n.environment, forMs: 3_600_000 })),
  );
}
