// API key cache: key prefix → namespace, status and limits, in each process (≤ API_KEY_LOCAL_CACHE_TTL_MS)
// and in Redis (≤ API_KEY_CACHE_TTL_MS), truth in PostgreSQL. A revocation rewrites the Redis copy and
// is broadcast on pub/sub, so every process refuses the key at once (and within the local TTL even if
// a message is lost).
import { AppError, isAppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { Redis } from '../../stores/redis/client.js';
import { RedisKeys } from '../../stores/redis/keys.js';
import { AccountsRepository, type ApiKeyRecord } from './accounts.repository.js';
import type { AccountsService } from './accounts.service.js';
import { parseApiKey, secretMatches } from './api-key.js';
import { findApiKeyPrefix } from './key-cache.repository.js';

export interface AuthenticatedKey {
  keyId: string;
  namespaceId: string;
  rateLimitPerS: number | null;
  burst: number | null;
}

/** What is cached (absent: no key with this prefix). */
interface CachedKey {
  absent?: true;
  id?: string;
  namespaceId?: string;
  secretHash?: string;
  status?: ApiKeyRecord['status'];
  rateLimitPerS?: number | null;
  burst?: number | null;
  expiresAtMs?: number | null;
}

export interface ApiKeyCacheOptions {
  prefix: string;
  pepper: string;
  redisTtlMs: number;
  localTtlMs: number;
}

export class ApiKeyCache {
  private readonly keys: RedisKeys;
  private readonly repo = new AccountsRepository();
  private readonly local = new Map<string, { value: CachedKey; until: number }>();
  /** Bumped by every invalidation: a lookup that started before one does not fill the local cache. */
  private generation = 0;
  private started = false;
  private readonly log: Logger;

  constructor(
    private readonly deps: {
      pool: Pool;
      redis: Redis;
      /** A connection of its own, used only for SUBSCRIBE. */
      subscriber: Redis;
      accounts: AccountsService;
      log: Logger;
      options: ApiKeyCacheOptions;
    },
  ) {
    this.keys = new RedisKeys(deps.options.prefix);
    this.log = deps.log.child({ component: 'api-key-cache' });
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const channel = this.keys.apiKeyInvalidationChannel();
    this.deps.subscriber.on('message', (ch: string, prefix: string) => {
      if (ch !== channel) return;
      this.generation += 1;
      this.local.delete(prefix);
    });
    // Messages sent while disconnected are lost: forget everything local on every (re)connect.
    this.deps.subscriber.on('ready', () => this.dropLocal());
    await this.deps.subscriber.subscribe(channel);
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.deps.subscriber.unsubscribe().catch(() => undefined);
    this.dropLocal();
  }

  /** The key's namespace and limits, or `unauthorized` (same error for every failure). */
  async authenticate(plaintext: string, now = Date.now()): Promise<AuthenticatedKey> {
    const refuse = () => new AppError('unauthorized', 'invalid API key');
    const parsed = parseApiKey(plaintext);
    if (!parsed) throw refuse();
    const k = await this.lookup(parsed.prefix, now);
    if (k.absent || !k.secretHash || k.status !== 'active') throw refuse();
    if (k.expiresAtMs !== null && k.expiresAtMs !== undefined && k.expiresAtMs <= now) throw refuse();
    if (!secretMatches(parsed.secret, this.deps.options.pepper, Buffer.from(k.secretHash, 'base64')))
      throw refuse();
    return {
      keyId: k.id!,
      namespaceId: k.namespaceId!,
      rateLimitPerS: k.rateLimitPerS ?? null,
      burst: k.burst ?? null,
    };
  }

  /** Revokes in PostgreSQL, then invalidates every cache. */
  async revoke(namespaceId: string, keyId: string): Promise<void> {
    let notActive: unknown;
    try {
      await this.deps.accounts.revokeApiKey(namespaceId, keyId);
    } catch (err) {
      // Already revoked (e.g. a retry after a crash between the two writes): invalidate all the same.
      if (!isAppError(err, 'not_found')) throw err;
      notActive = err;
    }
    const prefix = await findApiKeyPrefix(this.deps.pool, namespaceId, keyId);
    if (prefix) await this.invalidate(prefix);
    if (notActive) throw notActive;
  }

  /** Rewrites the Redis copy from PostgreSQL (overwriting any concurrent fill) and tells every process. */
  async invalidate(keyPrefix: string): Promise<void> {
    this.generation += 1;
    this.local.delete(keyPrefix);
    const fresh = toCached(await this.repo.findApiKeyByPrefix(this.deps.pool, keyPrefix));
    await this.deps.redis.set(
      this.keys.apiKeyCache(keyPrefix),
      JSON.stringify(fresh),
      'PX',
      this.deps.options.redisTtlMs,
    );
    await this.deps.redis.publish(this.keys.apiKeyInvalidationChannel(), keyPrefix);
  }

  private async lookup(keyPrefix: string, now: number): Promise<CachedKey> {
    const hit = this.local.get(keyPrefix);
    if (hit && hit.until > now) return hit.value;
    const gen = this.generation;
    const redisKey = this.keys.apiKeyCache(keyPrefix);
    let value: CachedKey;
    const cached = await this.deps.redis.get(redisKey);
    if (cached !== null) {
      value = JSON.parse(cached) as CachedKey;
    } else {
      value = toCached(await this.repo.findApiKeyByPrefix(this.deps.pool, keyPrefix));
      // NX: a revocation's rewrite that landed meanwhile wins over this (possibly older) read.
      await this.deps.redis.set(redisKey, JSON.stringify(value), 'PX', this.deps.options.redisTtlMs, 'NX');
    }
    if (gen === this.generation)
      this.local.set(keyPrefix, { value, until: now + this.deps.options.localTtlMs });
    return value;
  }

  private dropLocal(): void {
    this.generation += 1;
    this.local.clear();
    this.log.debug('local API key cache dropped');
  }
}

function toCached(k: ApiKeyRecord | undefined): CachedKey {
  if (!k) return { absent: true };
  return {
    id: k.id,
    namespaceId: k.namespaceId,
    secretHash: k.secretHash.toString('base64'),
    status: k.status,
    rateLimitPerS: k.rateLimitPerS,
    burst: k.burst,
    expiresAtMs: k.expiresAt ? k.expiresAt.getTime() : null,
  };
}
