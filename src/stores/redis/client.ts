// Redis client factory and health check. Key names live in keys.ts, scripts in scripts/*.lua.
import { Redis } from 'ioredis';

export type { Redis };

/** `subscriber`: a connection only for (P)SUBSCRIBE — no ready check (INFO is refused in subscriber mode). */
export function createRedis(url: string, opts: { lazyConnect?: boolean; subscriber?: boolean } = {}): Redis {
  return new Redis(url, {
    lazyConnect: opts.lazyConnect ?? false,
    maxRetriesPerRequest: 3,
    enableAutoPipelining: !opts.subscriber,
    enableReadyCheck: !opts.subscriber,
    // Reconnect forever with a capped backoff: Redis restarts are expected and survivable.
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  });
}

export async function redisHealth(redis: Redis): Promise<{ version: string; rttMs: number }> {
  const t0 = performance.now();
  await redis.ping();
  const rttMs = performance.now() - t0;
  const info = await redis.info('server');
  return { version: `Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'}`, rttMs };
}

/** Every key matching `pattern`, by SCAN (never KEYS: it does not block the server). */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}

/** Unlinks every key under `prefix`; returns how many. */
export async function deleteKeysByPrefix(redis: Redis, prefix: string): Promise<number> {
  const keys = await scanKeys(redis, `${prefix}*`);
  let deleted = 0;
  for (let i = 0; i < keys.length; i += 1000) deleted += await redis.unlink(...keys.slice(i, i + 1000));
  return deleted;
}
