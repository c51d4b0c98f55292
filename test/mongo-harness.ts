// Mongo isolation for tests: a unique database per test file with the records indexes applied, dropped after.
import { mongoMigrationsDir } from '../src/platform/paths.js';
import { connectMongo, type MongoStore } from '../src/stores/mongo/client.js';
import { applyMongoIndexes, readMongoIndexSpecs } from '../src/stores/mongo/indexes.js';
import { baseConfig, uniqueName } from './harness.js';

export interface MongoTestDb {
  store: MongoStore;
  dbName: string;
  /** Drops the database and closes the client. */
  drop(): Promise<void>;
}

export async function createMongoTestDb(opts: { indexes?: boolean } = {}): Promise<MongoTestDb> {
  const dbName = uniqueName('t');
  const store = await connectMongo(baseConfig.MONGO_URL, dbName);
  if (opts.indexes !== false) {
    await applyMongoIndexes(store.db, await readMongoIndexSpecs(mongoMigrationsDir()), store.capabilities, {
      ttlDays: baseConfig.RECORDS_TTL_SAFETY_DAYS,
    });
  }
  return {
    store,
    dbName,
    drop: async () => {
      await store.db.dropDatabase();
      await store.close();
    },
  };
}
