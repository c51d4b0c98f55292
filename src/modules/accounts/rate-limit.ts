// Rate limits per API key and per namespace: two token buckets taken together in one Lua script
// (rate_limit.lua), with the figures response headers need. Where the limits are large, a process takes
// tokens from Redis in chunks and spends them from memory (one script call per chunk, not per request).
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

/** A chunk of tokens this process took from both buckets and spends locally until it expires. */
interface Grant {
  tokens: number;
  expiresAtMs: number;
  /** Until then, requests go to Redis one by one (a chunk was refused: the bucket is nearly empty). */
  exactUntilMs: number;
  /** Until then, requests are refused from memory with `denied` (Redis refused one; retry-after not over). */
  deniedUntilMs: number;
  denied?: RateDecision;
  /** The tighter bucket's tokens in Redis right after the chunk was taken, and its figures. */
  remaining: number;
  limit: number;
  resetMs: number;
}

/** Unspent tokens of a chunk are dropped after this long (they are lost, never given back: see chunkSize). */
const GRANT_TTL_MS = 200;
const MAX_CHUNK = 64;

/**
 * The largest chunk for these limits: at most an eighth of the smaller burst and a tenth of a second of the
 * smaller rate, so a chunk never holds a meaningful part of a bucket. 1 or less: every request goes to Redis.
 * The chunk actually taken is smaller still: what this process saw for that (namespace, key) in the last
 * GRANT_TTL_MS, plus one (see RateLimiter.demandOf), so a key with little traffic takes single tokens.
 *
 * Bounds (N processes): tokens are taken from Redis before they are spent, so together the processes never
 * admit more than the buckets allow (0 over the limit). What they can do is admit less: a chunk's unspent
 * tokens are lost when it expires. A chunk is at most the requests its key sent this process in the previous
 * window + 1, so per window a process strands at most min(chunk cap, that key's recent requests) tokens per
 * key: the namespace bucket loses at most what its keys' own traffic was in the window before (never
 * N × keys × chunk), and a key sending below one request per window loses nothing. The `remaining`
 * header is the Redis figure at the chunk's fetch plus what this process still holds.
 */
export function chunkSize(rates: number[], bursts: number[]): number {
  return Math.min(MAX_CHUNK, Math.floor(Math.min(...bursts) / 8), Math.floor(Math.min(...rates) / 10));
}

/** Requests this process saw for one bucket pair: the current GRANT_TTL_MS window and the one before. */
interface Demand {
  windowStartMs: number;
  count: number;
  previous: number;
}

export class RateLimiter {
  private readonly keys: RedisKeys;
  private readonly grants = new Map<string, Grant>();
  private readonly fetching = new Map<string, Promise<RateDecision>>();
  private readonly demand = new Map<string, Demand>();
  /** Script calls made (for tests and the benchmark's per-job counts). */
  redisCalls = 0;

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
    const cost = req.cost ?? 1;
    const cap = chunkSize([keyRate, d.namespacePerS], [keyBurst, d.namespaceBurst]);
    if (cap <= cost) return this.fromRedis(req.namespaceId, req.keyId, keyRate, keyBurst, cost);

    // Limits may differ per key: they are part of the grant's identity.
    const id = `${req.namespaceId}\0${req.keyId}\0${keyRate}\0${keyBurst}`;
    // Sized by recent demand: a quiet key does not take (and then strand) a chunk of the namespace's tokens.
    const seen = this.demandOf(id);
    const chunk = Math.min(cap, seen * cost + cost);
    if (chunk <= cost && !this.grants.has(id) && !this.fetching.has(id))
      return this.fromRedis(req.namespaceId, req.keyId, keyRate, keyBurst, cost);
    const exact = () => this.exact(id, req.namespaceId, req.keyId, keyRate, keyBurst, cost);
    for (;;) {
      const local = this.spend(id, cost);
      if (local) return local;
      const g = this.grants.get(id);
      // Near the limit (a chunk was refused lately): request by request, refusals remembered.
      if (g && g.exactUntilMs > Date.now()) return exact();
      const inFlight = this.fetching.get(id);
      if (!inFlight) break;
      const r = await inFlight.catch(() => undefined);
      if (!r?.allowed) return exact();
    }
    const p = this.fromRedis(req.namespaceId, req.keyId, keyRate, keyBurst, chunk);
    this.fetching.set(id, p);
    let got: RateDecision;
    try {
      got = await p;
    } finally {
      if (this.fetching.get(id) === p) this.fetching.delete(id);
    }
    if (this.grants.size >= 10_000) this.sweep();
    const held = this.grants.get(id);
    const now = Date.now();
    if (!got.allowed) {
      this.grants.set(id, { ...this.emptyGrant(now), exactUntilMs: now + GRANT_TTL_MS });
      return exact();
    }
    const leftover = held && held.expiresAtMs > now ? held.tokens : 0;
    this.grants.set(id, {
      tokens: leftover + chunk - cost,
      expiresAtMs: now + GRANT_TTL_MS,
      exactUntilMs: 0,
      deniedUntilMs: 0,
      remaining: got.remaining,
      limit: got.limit,
      resetMs: got.resetMs,
    });
    return { ...got, remaining: got.remaining + leftover + chunk - cost };
  }

  /** Counts this request for `id` and answers how many came before it in the last GRANT_TTL_MS window. */
  private demandOf(id: string, now = Date.now()): number {
    let dm = this.demand.get(id);
    if (!dm) {
      if (this.demand.size >= 10_000) this.sweep();
      dm = { windowStartMs: now, count: 0, previous: 0 };
      this.demand.set(id, dm);
    } else if (now - dm.windowStartMs >= GRANT_TTL_MS) {
      // The window before is the one just ended only when it is adjacent; after a pause there was none.
      dm.previous = now - dm.windowStartMs < 2 * GRANT_TTL_MS ? dm.count : 0;
      dm.windowStartMs = now;
      dm.count = 0;
    }
    const seen = dm.previous + dm.count;
    dm.count += 1;
    return seen;
  }

  private emptyGrant(now: number): Grant {
    return {
      tokens: 0,
      expiresAtMs: now,
      exactUntilMs: 0,
      deniedUntilMs: 0,
      remaining: 0,
      limit: 0,
      resetMs: 0,
    };
  }

  /**
   * One request's tokens straight from Redis; a refusal is remembered until its retry-after, and requests
   * of that key are refused from memory meanwhile (conservative: no token is admitted that Redis did not give).
   */
  private async exact(
    id: string,
    namespaceId: string,
    keyId: string,
    keyRate: number,
    keyBurst: number,
    cost: number,
  ): Promise<RateDecision> {
    const g = this.grants.get(id);
    const now = Date.now();
    if (g && g.deniedUntilMs > now && g.denied) return { ...g.denied, retryAfterMs: g.deniedUntilMs - now };
    const d = await this.fromRedis(namespaceId, keyId, keyRate, keyBurst, cost);
    if (!d.allowed) {
      const cur = this.grants.get(id) ?? this.emptyGrant(now);
      this.grants.set(id, {
        ...cur,
        exactUntilMs: Math.max(cur.exactUntilMs, now + d.retryAfterMs + GRANT_TTL_MS),
        deniedUntilMs: now + d.retryAfterMs,
        denied: d,
      });
    }
    return d;
  }

  /** Drops expired grants and demand counts (memory stays bounded by the keys active lately). */
  private sweep(): void {
    const now = Date.now();
    for (const [id, g] of this.grants)
      if (Math.max(g.expiresAtMs, g.exactUntilMs, g.deniedUntilMs) <= now) this.grants.delete(id);
    for (const [id, dm] of this.demand)
      if (now - dm.windowStartMs >= 2 * GRANT_TTL_MS) this.demand.delete(id);
  }

  private spend(id: string, cost: number): RateDecision | undefined {
    const g = this.grants.get(id);
    if (!g) return undefined;
    if (g.expiresAtMs <= Date.now() || g.tokens < cost) return undefined;
    g.tokens -= cost;
    return {
      allowed: true,
      remaining: g.remaining + Math.floor(g.tokens),
      limit: g.limit,
      resetMs: g.resetMs,
      retryAfterMs: 0,
    };
  }

  private async fromRedis(
    namespaceId: string,
    keyId: string,
    keyRate: number,
    keyBurst: number,
    cost: number,
  ): Promise<RateDecision> {
    const d = this.deps.defaults;
    const base = this.keys.rateLimitBase(namespaceId);
    this.redisCalls += 1;
    const r = (await runScript(
      this.deps.redis,
      getScript('rate_limit'),
      [`${base}ns`, `${base}key:${keyId}`],
      [keyRate, keyBurst, d.namespacePerS, d.namespaceBurst, cost],
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
