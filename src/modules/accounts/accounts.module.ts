// Builds the accounts module from config and stores: accounts and keys (PostgreSQL), the API key cache (Redis,
// invalidated over pub/sub; start() it before use), the rate limiter (Redis token buckets) and the audited
// account actions of the Admin and Gate APIs.
import type { Config } from '../../config/config.js';
import type { Logger } from '../../platform/logger.js';
import type { Stores } from '../../stores/stores.js';
import type { AuditService } from '../audit/index.js';
import { AccountActions } from './account-actions.js';
import { AccountsService } from './accounts.service.js';
import { ApiKeyCache } from './key-cache.js';
import { RateLimiter } from './rate-limit.js';

export interface AccountsModule {
  accounts: AccountsService;
  keyCache: ApiKeyCache;
  rateLimiter: RateLimiter;
  actions: AccountActions;
}

export function createAccountsModule(deps: {
  config: Config;
  stores: Pick<Stores, 'pool' | 'redis' | 'subscriber'>;
  log: Logger;
  audit: AuditService;
}): AccountsModule {
  const { config, log } = deps;
  const { pool, redis, subscriber } = deps.stores;
  const accounts = new AccountsService({ pool, apiKeyPepper: config.API_KEY_PEPPER });
  const keyCache = new ApiKeyCache({
    pool,
    redis,
    subscriber,
    accounts,
    log,
    options: {
      prefix: config.REDIS_KEY_PREFIX,
      pepper: config.API_KEY_PEPPER,
      redisTtlMs: config.API_KEY_CACHE_TTL_MS,
      localTtlMs: config.API_KEY_LOCAL_CACHE_TTL_MS,
    },
  });
  const rateLimiter = new RateLimiter({
    redis,
    prefix: config.REDIS_KEY_PREFIX,
    defaults: {
      keyPerS: config.RATE_LIMIT_KEY_PER_S,
      keyBurst: config.RATE_LIMIT_KEY_BURST,
      namespacePerS: config.RATE_LIMIT_NAMESPACE_PER_S,
      namespaceBurst: config.RATE_LIMIT_NAMESPACE_BURST,
    },
  });
  const actions = new AccountActions({ pool, accounts, keyCache, audit: deps.audit });
  return { accounts, keyCache, rateLimiter, actions };
}
