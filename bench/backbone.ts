// What the end-to-end benchmarks share: the environment of a benchmark's own backbone process (its stores,
// its own RabbitMQ names, no rate limit in the way) and a funded namespace with an API key.
import { randomBytes } from 'node:crypto';
import type { Config } from '../src/config/config.js';
import { AccountsService } from '../src/modules/accounts/index.js';
import { LedgerService } from '../src/modules/credits/index.js';
import { createLogger } from '../src/platform/logger.js';
import type { TestStores } from '../test/backbone-harness.js';

export const newAdminToken = (): string => `bench-admin-${randomBytes(8).toString('hex')}`;

export function backboneEnv(
  config: Config,
  opts: { redisUrl?: string; adminToken: string; nodes: number },
): Record<string, string> {
  return {
    POSTGRES_SCHEMA: config.POSTGRES_SCHEMA,
    REDIS_URL: opts.redisUrl ?? config.REDIS_URL,
    REDIS_KEY_PREFIX: config.REDIS_KEY_PREFIX,
    AMQP_URL: config.AMQP_URL,
    MONGO_DB: config.MONGO_DB,
    // Its own RabbitMQ names: the benchmark's backbone never shares a queue with another on the vhost.
    DEPLOYMENT:
      config.DEPLOYMENT ||
      config.POSTGRES_SCHEMA.toLowerCase()
        .replace(/[^a-z0-9_-]/g, '_')
        .slice(0, 40),
    ADMIN_TOKEN: opts.adminToken,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_KEY_PER_S: '1000000',
    RATE_LIMIT_KEY_BURST: '1000000',
    RATE_LIMIT_NAMESPACE_PER_S: '1000000',
    RATE_LIMIT_NAMESPACE_BURST: '1000000',
    ROUTING_CONSUMER_CONCURRENCY: '256',
    ROUTING_LANE_PREFETCH: '256',
    POSTGRES_POOL_SIZE: '16',
    HEARTBEAT_INTERVAL_MS: '10000',
    WS_PENDING_HELLOS_PER_ADDRESS: String(Math.max(1000, opts.nodes)),
  };
}

/** A namespace with a large prepaid balance and an API key for it (straight in the stores). */
export async function fundedApiKey(
  stores: TestStores,
  config: Config,
): Promise<{ namespaceId: string; key: string }> {
  const accounts = new AccountsService({ pool: stores.db.pool, apiKeyPepper: config.API_KEY_PEPPER });
  const ledger = new LedgerService({
    pool: stores.db.pool,
    log: createLogger('silent'),
    options: { batchMaxWaitMs: 2, batchMaxSize: 100, batchConcurrency: 1, holdTimeoutMs: 600_000 },
  });
  const account = await accounts.createAccount({ email: 'bench@example.test' });
  const ns = await accounts.createNamespace({ accountId: account.id, name: 'bench' });
  await ledger.topUp(ns.id, 1_000_000_000_000n, 'bench-topup');
  await ledger.stop();
  const key = (await accounts.createApiKey({ namespaceId: ns.id, name: 'bench' })).plaintext;
  return { namespaceId: ns.id, key };
}
