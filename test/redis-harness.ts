// Redis isolation for tests: a key prefix of its own on db 0 (cleaned with SCAN + UNLINK), or a whole
// logical database (9-15) held exclusively through a lock key, for tests that must flush the store.
import { Redis } from 'ioredis';
import { baseConfig, uniqueName } from './harness.js';

export interface RedisTestSpace {
  /** Key prefix of this test (ends with ':'). */
  prefix: string;
  redis: Redis;
  /** A second, independent connection to the same database. */
  connect(): Redis;
  /** Deletes every key under the prefix (or flushes the owned database) and closes connections. */
  drop(): Promise<void>;
}

function open(db: number): Redis {
  return new Redis(baseConfig.REDIS_URL, { db, enableAutoPipelining: true, maxRetriesPerRequest: 3 });
}

import { deleteKeysByPrefix } from '../src/stores/redis/client.js';

export const deleteByPrefix = deleteKeysByPrefix;

/** A prefix of its own on the shared db 0. */
export async function createRedisTestSpace(name = 't'): Promise<RedisTestSpace> {
  const prefix = `${uniqueName(`test:${name}`)}:`;
  const extra: Redis[] = [];
  const redis = open(0);
  return {
    prefix,
    redis,
    connect: () => {
      const r = open(0);
      extra.push(r);
      return r;
    },
    drop: async () => {
      await deleteByPrefix(redis, prefix);
      for (const r of [...extra, redis]) r.disconnect();
    },
  };
}

const lockTtlMs = 10 * 60_000;

/**
 * A logical database (9-15) owned by this test alone: claimed with SET NX on a lock key in db 0 and
 * required to be empty. FLUSHDB there stands in for FLUSHALL / a restart without touching anyone else.
 */
export async function createExclusiveRedisDb(): Promise<RedisTestSpace & { db: number }> {
  const control = open(0);
  const owner = uniqueName('owner');
  for (let db = 9; db <= 15; db += 1) {
    const lock = `rty:test-db-lock:${db}`;
    if ((await control.set(lock, owner, 'PX', lockTtlMs, 'NX')) !== 'OK') continue;
    const redis = open(db);
    if ((await redis.dbsize()) !== 0) {
      redis.disconnect();
      await control.del(lock);
      continue;
    }
    const extra: Redis[] = [];
    return {
      db,
      prefix: 'rty:',
      redis,
      connect: () => {
        const r = open(db);
        extra.push(r);
        return r;
      },
      drop: async () => {
        await redis.flushdb();
        for (const r of [...extra, redis]) r.disconnect();
        if ((await control.get(lock)) === owner) await control.del(lock);
        control.disconnect();
      },
    };
  }
  control.disconnect();
  throw new Error('no free Redis database among 9-15 (all locked or not empty)');
}
