// Rate limits per API key and per namespace: two token buckets taken together in one Lua script
// (rate_limit.lua), with the figures response headers need.
import { AppError } from '../../platform/errors.js';
import type { Redis } from '../../stores/redis/client.js';
import { RedisKeys } from '../../stores/redis/keys.js';
import { getScript, runScript } from '../../stores/redis/scripts.js';

export interface RateLimitDefaults {
  keyPerS: number;
  keyBurst: number;
  namespacePerS: number;
  namespaceBurst: number;
}

export interface RateDecision {
  allowed: boolean;
  /** Whole tokens left in the tighter bucket. */
  remaining: number;
  /** The tighter bucket's size (the `limit` header). */
  limit: number;
  /** Until the buckets are full again. */
  resetMs: number;
  /** When refused: how long until the request would pass. */
  retryAfterMs: number;
}

export class RateLimiter {
  private readonly keys: RedisKeys;

  constructor(private readonly deps: { redis: Redis; prefix: string; defaults: RateLimitDefaults }) {
    this.keys = new RedisKeys(deps.prefix);
  }

  /** Takes `cost` tokens from both buckets, or none when either lacks them. */
  async check(req: {
    namespaceId: string;
    keyId: string;
    /** The key's own limits (api_keys.rate_limit_per_s, burst); defaults when null. */
    keyRatePerS?: number | null;
    keyBurst?: number | null;
    cost?: number;
  }): Promise<RateDecision> {
    const d = this.deps.defaults;
    const keyRate = req.keyRatePerS ?? d.keyPerS;
    const keyBurst = req.keyBurst ?? req.keyRatePerS ?? d.keyBurst;
    const base = this.keys.rateLimitBase(req.namespaceId);
    const r = (await runScript(
      this.deps.redis,
      getScript('rate_limit'),
      [`${base}ns`, `${base}key:${req.keyId}`],
      [keyRate, keyBurst, d.namespacePerS, d.namespaceBurst, req.cost ?? 1],
    )) as number[];
    return {
      allowed: r[0] === 1,
      remaining: Number(r[1]),
      limit: Math.min(keyBurst, d.namespaceBurst),
      resetMs: Number(r[2]),
      retryAfterMs: Number(r[3]),
    };
  }

  /** Like check, but throws `rate_limited` (429, retryable) with the headers in its details. */
  async take(req: Parameters<RateLimiter['check']>[0]): Promise<RateDecision> {
    const d = await this.check(req);
    if (!d.allowed)
      throw new AppError('rate_limited', 'rate limit exceeded', {
        headers: rateLimitHeaders(d),
        retryAfterMs: d.retryAfterMs,
      });
    return d;
  }
}

/** Standard-ish response headers (seconds, rounded up). */
export function rateLimitHeaders(d: RateDecision): Record<string, string> {
  const h: Record<string, string> = {
    'x-ratelimit-limit': String(d.limit),
    'x-ratelimit-remaining': String(d.remaining),
    'x-ratelimit-reset': String(Math.ceil(d.resetMs / 1000)),
  };
  if (!d.allowed) h['retry-after'] = String(Math.max(1, Math.ceil(d.retryAfterMs / 1000)));
  return h;
}
