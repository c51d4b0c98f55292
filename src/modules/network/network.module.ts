// Builds the network module: signed network config versions (PostgreSQL) and the node message nonce store
// (Redis, one for every surface that verifies node messages).
import type { Config } from '../../config/config.js';
import type { Stores } from '../../stores/stores.js';
import { NetworkConfigService } from './network-config.service.js';
import type { NonceStore } from './node-message.js';
import { RedisNonceStore } from './nonce-store.js';

export interface NetworkModule {
  networkConfig: NetworkConfigService;
  nonces: NonceStore;
}

export function createNetworkModule(deps: {
  config: Pick<Config, 'NETWORK_SIGNING_KEY' | 'REDIS_KEY_PREFIX'>;
  stores: Pick<Stores, 'pool' | 'redis'>;
}): NetworkModule {
  const { config, stores } = deps;
  return {
    networkConfig: new NetworkConfigService({
      pool: stores.pool,
      signingKey: config.NETWORK_SIGNING_KEY as `0x${string}`,
    }),
    nonces: new RedisNonceStore(stores.redis, config.REDIS_KEY_PREFIX),
  };
}
