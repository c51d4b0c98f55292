// Public face of the accounts module.
export { AccountsService, type CreatedApiKey, type CreatedAccountToken } from './accounts.service.js';
export type { AccountTokenRecord } from './account-tokens.repository.js';
export { parseAccountToken } from './account-token.js';
export type { Account, Namespace, ApiKeyRecord } from './accounts.repository.js';
export { parseApiKey } from './api-key.js';
export { ApiKeyCache, type AuthenticatedKey, type ApiKeyCacheOptions } from './key-cache.js';
export { RateLimiter, rateLimitHeaders, type RateDecision, type RateLimitDefaults } from './rate-limit.js';
export { createAccountsModule, type AccountsModule } from './accounts.module.js';
export { AccountActions, type Tx } from './account-actions.js';
