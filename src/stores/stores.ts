// The four stores of a backbone process, connected once by the composition root and handed to the modules'
// factories (each takes only the ones it names: `Pick<Stores, 'pool' | 'redis'>`).
import type { MongoStore } from './mongo/client.js';
import type { Pool } from './postgres/pool.js';
import type { Redis } from './redis/client.js';

export interface Stores {
  pool: Pool;
  redis: Redis;
  /** Subscriber-mode connection shared by the API key cache, job results and streams, the gateway relay. */
  subscriber: Redis;
  mongo: MongoStore;
}
