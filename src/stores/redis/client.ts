// Redis client factory and health check. Key names live in keys.ts, scripts in scripts/*.lua.
import { Redis } from 'ioredis';

export type { Redis };

export function createRedis(url: string, opts: { lazyConnect?: boolean } = {}): Redis {
  return new Redis(url, {
    lazyConnect: opts.lazyConnect ?? false,
    maxRetriesPerRequest: 3,
    enableAutoPipelining: true,
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
