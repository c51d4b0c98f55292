// API key cache against the real PostgreSQL and Redis: hits, refusals, and a revocation on one process
// refused by another (separate connections) within 1 s.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createRedisTestSpace, type RedisTestSpace } from '../../../test/redis-harness.js';
import { isAppError } from '../../platform/errors.js';
import { AccountsService, ApiKeyCache } from './index.js';

let pg: PgTestSchema;
let space: RedisTestSpace;
let accounts: AccountsService;
const caches: ApiKeyCache[] = [];

beforeAll(async () => {
  pg = await createPgTestSchema({ poolSize: 4 });
  space = await createRedisTestSpace('apikey');
  accounts = new AccountsService({ pool: pg.pool, apiKeyPepper: baseConfig.API_KEY_PEPPER });
});
afterAll(async () => {
  for (const c of caches) await c.stop();
  await space.drop();
  await pg.drop();
});

/** One "process": its own Redis command and subscriber connections. */
async function processCache(): Promise<ApiKeyCache> {
  const cache = new ApiKeyCache({
    pool: pg.pool,
    redis: space.connect(),
    subscriber: space.connect(),
    accounts,
    log: testLog,
    options: {
      prefix: space.prefix,
      pepper: baseConfig.API_KEY_PEPPER,
      redisTtlMs: 60_000,
      // Long on purpose: the refusal within 1 s must come from the invalidation, not from expiry.
      localTtlMs: 60_000,
    },
  });
  await cache.start();
  caches.push(cache);
  return cache;
}

const unauthorized = (e: unknown) => isAppError(e, 'unauthorized');

describe('API key cache', () => {
  it('authenticates from cache and refuses wrong secrets, unknown prefixes and expired keys', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const cache = await processCache();
    const { key, plaintext } = await accounts.createApiKey({
      namespaceId: ns!.id,
      rateLimitPerS: 5,
      burst: 10,
    });
    const expected = { keyId: key.id, namespaceId: ns!.id, rateLimitPerS: 5, burst: 10 };
    expect(await cache.authenticate(plaintext)).toEqual(expected);
    expect(await space.redis.exists(`${space.prefix}cache:apikey:${key.prefix}`)).toBe(1);
    expect(await cache.authenticate(plaintext)).toEqual(expected);
    await expect(
      cache.authenticate(`${plaintext.slice(0, -1)}${plaintext.endsWith('A') ? 'B' : 'A'}`),
    ).rejects.toSatisfy(unauthorized);
    await expect(cache.authenticate(`rty_${'z'.repeat(12)}_${'a'.repeat(43)}`)).rejects.toSatisfy(
      unauthorized,
    );
    await expect(cache.authenticate('not-a-key')).rejects.toSatisfy(unauthorized);
    const soon = await accounts.createApiKey({
      namespaceId: ns!.id,
      expiresAt: new Date(Date.now() + 60_000),
    });
    await cache.authenticate(soon.plaintext);
    await expect(cache.authenticate(soon.plaintext, Date.now() + 61_000)).rejects.toSatisfy(unauthorized);
  });

  it('a key revoked through one process is refused by another within 1 s (measured)', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const a = await processCache();
    const b = await processCache();
    const { key, plaintext } = await accounts.createApiKey({ namespaceId: ns!.id });
    // Both processes have the key in their local caches.
    await a.authenticate(plaintext);
    await b.authenticate(plaintext);

    const t0 = Date.now();
    await a.revoke(ns!.id, key.id);
    await expect(a.authenticate(plaintext)).rejects.toSatisfy(unauthorized);
    let refusedAfterMs = -1;
    for (let i = 0; i < 40; i += 1) {
      const ok = await b.authenticate(plaintext).then(
        () => true,
        () => false,
      );
      if (!ok) {
        refusedAfterMs = Date.now() - t0;
        break;
      }
      await new Promise<void>((r) => setTimeout(r, 25));
    }
    process.stdout.write(`revoked key refused by the second process after ${refusedAfterMs} ms\n`);
    expect(refusedAfterMs).toBeGreaterThanOrEqual(0);
    expect(refusedAfterMs).toBeLessThanOrEqual(1_000);
    // A third process that never saw the key refuses it too (the Redis copy was rewritten).
    const c = await processCache();
    await expect(c.authenticate(plaintext)).rejects.toSatisfy(unauthorized);
    // Revoking again reports it, and still invalidates (a retry after a crash between the writes).
    await expect(a.revoke(ns!.id, key.id)).rejects.toSatisfy((e) => isAppError(e, 'not_found'));
  });
});
