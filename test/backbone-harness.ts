// A whole backbone process for a test file: own PostgreSQL schema (migrated), Redis prefix, Mongo database
// (indexes applied), RabbitMQ vhost, serving HTTP on a free loopback port. `drop()` stops it and removes all.
import type { Config } from '../src/config/config.js';
import type { NodeExecutor } from '../src/modules/jobs/index.js';
import { parseRoles } from '../src/app/compose.js';
import { startServer, type RunningServer } from '../src/app/serve.js';
import { createAmqpTestVhost, type AmqpTestVhost } from './amqp-harness.js';
import { createPgTestSchema, testLog, type PgTestSchema } from './harness.js';
import { createMongoTestDb, type MongoTestDb } from './mongo-harness.js';
import { createRedisTestSpace, type RedisTestSpace } from './redis-harness.js';

export interface TestStores {
  db: PgTestSchema;
  space: RedisTestSpace;
  vhost: AmqpTestVhost;
  mongo: MongoTestDb;
  /** The config a backbone on these stores uses (pass overrides for timeouts etc.). */
  config(overrides?: Partial<Config>): Config;
  drop(): Promise<void>;
}

export async function createTestStores(): Promise<TestStores> {
  const [db, space, vhost, mongo] = await Promise.all([
    createPgTestSchema({ poolSize: 4 }),
    createRedisTestSpace('bb'),
    createAmqpTestVhost(),
    createMongoTestDb(),
  ]);
  return {
    db,
    space,
    vhost,
    mongo,
    config: (overrides = {}) =>
      Object.freeze({
        ...db.config,
        REDIS_KEY_PREFIX: space.prefix,
        AMQP_URL: vhost.url,
        MONGO_DB: mongo.dbName,
        HTTP_HOST: '127.0.0.1',
        ...overrides,
      }),
    drop: async () => {
      await Promise.allSettled([db.drop(), space.drop(), vhost.drop(), mongo.drop()]);
    },
  };
}

/** Starts a backbone on the stores (any free port); stop it with `server.stop()` before `stores.drop()`. */
export async function startTestServer(
  stores: TestStores,
  opts: { roles?: string; overrides?: Partial<Config>; executor?: NodeExecutor } = {},
): Promise<RunningServer> {
  return startServer({
    ...(opts.executor ? { executor: opts.executor } : {}),
    config: stores.config(opts.overrides),
    log: testLog,
    roles: parseRoles(opts.roles ?? 'cloud,io,gate,admin,status,workers'),
    port: 0,
  });
}
