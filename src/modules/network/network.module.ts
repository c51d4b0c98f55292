// Builds the network module: signed network config versions (PostgreSQL) and the node message nonce store
// (Redis, one for every surface that verifies node messages).
import type { Config } from '../../config/config.js';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import { topologyNames } from '../../stores/rabbitmq/topology.js';
import type { Stores } from '../../stores/stores.js';
import type { NodesModule } from '../nodes/index.js';
import { readRecordsBacklog } from '../records/index.js';
import { publicQueueName, type RoutingService } from '../routing/index.js';
import { NetworkStatusService } from './network-status.service.js';
import { NetworkConfigService } from './network-config.service.js';
import type { NonceStore } from './node-message.js';
import { RedisNonceStore } from './nonce-store.js';
import { PriceBook } from './price-book.js';

export interface NetworkModule {
  networkConfig: NetworkConfigService;
  nonces: NonceStore;
  /** The price table in force (the latest config version's), in process memory. */
  prices: PriceBook;
}

export function createNetworkModule(deps: {
  config: Pick<
    Config,
    'NETWORK_SIGNING_KEY' | 'REDIS_KEY_PREFIX' | 'PRICE_PER_TOKEN_MICRO' | 'PRICE_TABLE_REFRESH_MS'
  >;
  stores: Pick<Stores, 'pool' | 'redis'>;
  log: Logger;
}): NetworkModule {
  const { config, stores } = deps;
  const networkConfig = new NetworkConfigService({
    pool: stores.pool,
    signingKey: config.NETWORK_SIGNING_KEY as `0x${string}`,
  });
  const flat = config.PRICE_PER_TOKEN_MICRO * 1000;
  return {
    networkConfig,
    nonces: new RedisNonceStore(stores.redis, config.REDIS_KEY_PREFIX),
    prices: new PriceBook({
      latest: () => networkConfig.latest(),
      flat: { inputMicroPer1kTokens: flat, outputMicroPer1kTokens: flat },
      refreshMs: config.PRICE_TABLE_REFRESH_MS,
      log: deps.log.child({ component: 'prices' }),
    }),
  };
}

/** The public network status (Status API): the live catalog, public queue depths and the records backlog. */
export function createNetworkStatus(deps: {
  config: Pick<Config, 'REDIS_KEY_PREFIX' | 'LIVE_CACHE_TTL_MS' | 'DEPLOYMENT'>;
  stores: Pick<Stores, 'pool' | 'redis'>;
  nodes: { catalog: Pick<NodesModule['catalog'], 'status' | 'catalog'> };
  routing: Pick<RoutingService, 'health' | 'connection'>;
}): NetworkStatusService {
  const { config, nodes, routing } = deps;
  return new NetworkStatusService({
    pool: deps.stores.pool,
    redis: deps.stores.redis,
    prefix: config.REDIS_KEY_PREFIX,
    ttlMs: config.LIVE_CACHE_TTL_MS,
    liveStatus: () => nodes.catalog.status(),
    catalog: (env) => nodes.catalog.catalog(env),
    // Public: lanes are summed per environment, model and priority. A lane's name ends with its Subcloud and
    // namespace ids, which must not leak to anyone (per-lane depths are on /admin/v1/queues).
    queueDepths: async () => {
      const h = await routing.health();
      const out: Record<string, number> = {};
      for (const q of h.queues) {
        if (q.messages === undefined) continue;
        const name = publicQueueName(q.queue, config.DEPLOYMENT);
        out[name] = (out[name] ?? 0) + q.messages;
      }
      return out;
    },
    // Records lag as seen on the broker (any process): what the recorder has not written yet.
    recordsBacklog: async () => {
      const conn = routing.connection.connection;
      if (!conn) throw new AppError('store_unavailable', 'RabbitMQ is not connected');
      return readRecordsBacklog(conn, topologyNames(config.DEPLOYMENT));
    },
  });
}
