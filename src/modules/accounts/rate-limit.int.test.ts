// Rate limits against the real Redis: burst admitted then refused, refill at the configured rate
// (counted against measured time), the namespace bucket binding across keys, headers.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisTestSpace, type RedisTestSpace } from '../../../test/redis-harness.js';
import { isAppError } from '../../platform/errors.js';
import { RateLimiter, rateLimitHeaders } from './index.js';

let space: RedisTestSpace;

beforeAll(async () => {
  space = await createRedisTestSpace('ratelimit');
});
afterAll(async () => {
  await space.drop();
});

const limiter = (over: Partial<ConstructorParameters<typeof RateLimiter>[0]['defaults']> = {}) =>
  new RateLimiter({
    redis: space.redis,
    prefix: space.prefix,
    defaults: { keyPerS: 10, keyBurst: 20, namespacePerS: 1_000, namespaceBurst: 1_000, ...over },
  });

describe('token buckets', () => {
  it('admits the burst at once, refuses above it, with remaining, reset and retry-after', async () => {
    // A refill of one token per 20 s: the final take is refused however slow the machine is.
    const rl = limiter({ keyPerS: 0.05 });
    const req = { namespaceId: randomUUID(), keyId: randomUUID() };
    const ds = await Promise.all(Array.from({ length: 30 }, () => rl.check(req)));
    const allowed = ds.filter((d) => d.allowed);
    expect(allowed.length).toBe(20);
    expect(Math.min(...allowed.map((d) => d.remaining))).toBe(0);
    const refused = ds.find((d) => !d.allowed)!;
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(20_000);
    // 20 tokens at 0.05/s: the bucket is full again in ~400 s.
    expect(refused.resetMs).toBeGreaterThan(300_000);
    expect(rateLimitHeaders(refused)).toMatchObject({
      'x-ratelimit-limit': '20',
      'x-ratelimit-remaining': '0',
      'retry-after': String(Math.ceil(refused.retryAfterMs / 1000)),
    });
    expect(Number(rateLimitHeaders(refused)['retry-after'])).toBeGreaterThan(1);
    await expect(rl.take(req)).rejects.toSatisfy((e) => isAppError(e, 'rate_limited'));
  });

  it('admits the configured rate when driven above it (counted against the measured time)', async () => {
    const rl = limiter({ keyPerS: 50, keyBurst: 5 });
    const req = { namespaceId: randomUUID(), keyId: randomUUID() };
    const t0 = Date.now();
    let allowed = 0;
    // Twice the rate for ~1.2 s, bounded by count.
    for (let i = 0; i < 120 && Date.now() - t0 < 1_200; i += 1) {
      if ((await rl.check(req)).allowed) allowed += 1;
      await new Promise<void>((r) => setTimeout(r, 10));
    }
    const elapsedS = (Date.now() - t0) / 1000;
    const ceiling = 5 + 50 * elapsedS;
    expect(allowed).toBeLessThanOrEqual(Math.ceil(ceiling) + 1);
    // Requests came at most every ~10 ms (≥ 50/s even on a busy machine), so nearly all the rate is used.
    expect(allowed).toBeGreaterThanOrEqual(Math.floor(ceiling * 0.6));
  });

  it("uses the key's own limits, and the namespace bucket binds across its keys without draining a refused key", async () => {
    const rl = limiter({ namespacePerS: 1, namespaceBurst: 8 });
    const namespaceId = randomUUID();
    const [k1, k2] = [randomUUID(), randomUUID()];
    const own = await rl.check({ namespaceId: randomUUID(), keyId: k1, keyRatePerS: 1, keyBurst: 3 });
    expect(own).toMatchObject({ allowed: true, remaining: 2, limit: 3 });
    let admitted = 0;
    for (let i = 0; i < 6; i += 1) if ((await rl.check({ namespaceId, keyId: k1 })).allowed) admitted += 1;
    for (let i = 0; i < 6; i += 1) if ((await rl.check({ namespaceId, keyId: k2 })).allowed) admitted += 1;
    expect(admitted).toBe(8);
    // k2 was refused by the namespace, not by its own bucket: its tokens were not taken.
    const k2Bucket = await space.redis.hget(`${space.prefix}rl:{${namespaceId}}:key:${k2}`, 'tokens');
    expect(Number(k2Bucket)).toBeGreaterThan(17);
  });
});

describe('chunked tokens (large limits)', () => {
  it('spends tokens taken from Redis in chunks: far fewer script calls than requests', async () => {
    const rl = limiter({
      keyPerS: 100_000,
      keyBurst: 100_000,
      namespacePerS: 100_000,
      namespaceBurst: 100_000,
    });
    const req = { namespaceId: randomUUID(), keyId: randomUUID() };
    const ds = await Promise.all(Array.from({ length: 640 }, () => rl.check(req)));
    expect(ds.every((d) => d.allowed)).toBe(true);
    expect(rl.redisCalls).toBeLessThanOrEqual(640 / 16);
  });

  it('two processes sharing a key never admit more than the buckets allow together', async () => {
    const over = { keyPerS: 200, keyBurst: 400, namespacePerS: 100_000, namespaceBurst: 100_000 };
    const [a, b] = [limiter(over), limiter(over)];
    const req = { namespaceId: randomUUID(), keyId: randomUUID() };
    const t0 = Date.now();
    let allowed = 0;
    await Promise.all(
      [a, b].map(async (rl) => {
        for (let i = 0; i < 600; i += 1) if ((await rl.check(req)).allowed) allowed += 1;
      }),
    );
    const ceiling = 400 + 200 * ((Date.now() - t0) / 1000);
    expect(a.redisCalls + b.redisCalls).toBeLessThan(1_200);
    expect(allowed).toBeLessThanOrEqual(Math.ceil(ceiling));
    // Early refusals are bounded by what the two may strand (chunk 20 each) per grant lifetime.
    expect(allowed).toBeGreaterThanOrEqual(400 - 2 * 20);
  });

  it('keys with little traffic take single tokens: 10 keys at 1 req each use 10 namespace tokens, not 10 chunks', async () => {
    // Chunk cap 10 (a tenth of a second of the namespace's 100/s); each key sends one request per round.
    const rl = limiter({ keyPerS: 1_000, keyBurst: 1_000, namespacePerS: 100, namespaceBurst: 100 });
    const namespaceId = randomUUID();
    const keys = Array.from({ length: 10 }, () => randomUUID());
    const nsTokens = async () =>
      Number(await space.redis.hget(`${space.prefix}rl:{${namespaceId}}:ns`, 'tokens'));
    for (let round = 0; round < 2; round += 1) {
      for (const keyId of keys) expect((await rl.check({ namespaceId, keyId })).allowed).toBe(true);
      // Refill can only add to the bucket: anything below 100 − 10 per round was taken and stranded.
      expect(await nsTokens()).toBeGreaterThanOrEqual(100 - 10 * (round + 1));
      if (round === 0) await new Promise<void>((r) => setTimeout(r, 450));
    }
    expect(rl.redisCalls).toBe(20);
  });
});
