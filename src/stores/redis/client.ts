// Redis client factory and health check. Key names live in keys.ts, scripts in scripts/*.lua.
import { Redis } from 'ioredis';
import { AppError } from '../../platform/errors.js';
import { StoreError } from '../../platform/store-error.js';
import type { Logger } from '../../platform/logger.js';
import { isNetworkError } from '../net-errors.js';

export type { Redis };

/**
 * `subscriber`: a connection only for (P)SUBSCRIBE — no ready check (INFO is refused in subscriber mode).
 * Connection errors are heard here (logged at most every 5 s): ioredis reconnects by itself, and commands
 * fail with errors that translateRedisError classifies as retryable.
 */
export function createRedis(
  url: string,
  opts: { lazyConnect?: boolean; subscriber?: boolean; log?: Logger; commandTimeoutMs?: number } = {},
): Redis {
  const redis = new Redis(url, {
    lazyConnect: opts.lazyConnect ?? false,
    maxRetriesPerRequest: 3,
    enableAutoPipelining: !opts.subscriber,
    enableReadyCheck: !opts.subscriber,
    // A server that accepts but never answers (hung, half-open socket) fails commands instead of hanging them.
    ...(opts.subscriber ? {} : { commandTimeout: opts.commandTimeoutMs ?? 5_000 }),
    // Reconnect forever with a capped backoff: Redis restarts are expected and survivable.
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  });
  let lastLogged = 0;
  redis.on('error', (err: unknown) => {
    if (Date.now() - lastLogged < 5_000) return;
    lastLogged = Date.now();
    opts.log?.warn(
      { err: err instanceof Error ? err.message : String(err) },
      'Redis connection error; reconnecting',
    );
  });
  return redis;
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

// ioredis' own failures while the server is away (closed connection, retries exhausted, offline queue off)
// and the server's "not now" replies (loading after a restart, read-only replica, busy script, cluster down).
const redisUnavailable =
  /^(Connection is closed|Command timed out|Reached the max retries per request limit|Stream isn't writeable|LOADING|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|BUSY |NOREPLICAS)/;

/** Maps an ioredis failure to the catalogue: unreachable / restarting / loading is a retryable `store_unavailable`. */
export function translateRedisError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (
    (err instanceof Error && err.name === 'MaxRetriesPerRequestError') ||
    redisUnavailable.test(message) ||
    isNetworkError(err)
  )
    return new StoreError(
      { store: 'redis', kind: 'unavailable' },
      'Redis is unavailable or restarting; retry after a moment',
      { store: 'redis' },
      { cause: err },
    );
  return err;
}
