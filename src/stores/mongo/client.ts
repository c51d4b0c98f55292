// MongoDB client and capability probe; the same code runs on MongoDB 6/7 and on FerretDB 1.24.
import { MongoClient, type Db } from 'mongodb';

export interface MongoCapabilities {
  server: 'mongodb' | 'ferretdb';
  version: string;
  /** TTL indexes: MongoDB yes; FerretDB 1.x no (use them only as a safety net where present). */
  ttlIndexes: boolean;
  /** Multi-document transactions need a replica set on MongoDB; FerretDB 1.x has none. */
  transactions: boolean;
}

export interface MongoStore {
  client: MongoClient;
  db: Db;
  capabilities: MongoCapabilities;
  close(): Promise<void>;
}

export async function connectMongo(url: string, dbName: string): Promise<MongoStore> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 5_000, maxPoolSize: 20 });
  await client.connect();
  const capabilities = await probeMongoCapabilities(client);
  let closed = false;
  return {
    client,
    db: client.db(dbName),
    capabilities,
    close: async () => {
      if (closed) return;
      closed = true;
      await client.close();
    },
  };
}

export async function probeMongoCapabilities(client: MongoClient): Promise<MongoCapabilities> {
  const admin = client.db('admin');
  const info = await admin.command({ buildInfo: 1 });
  if (info.ferretdbVersion !== undefined) {
    return {
      server: 'ferretdb',
      version: String(info.ferretdbVersion),
      ttlIndexes: false,
      transactions: false,
    };
  }
  const hello = await admin.command({ hello: 1 });
  const replicated = Boolean(hello.setName) || hello.msg === 'isdbgrid';
  return { server: 'mongodb', version: String(info.version), ttlIndexes: true, transactions: replicated };
}

export async function mongoHealth(store: MongoStore): Promise<{ version: string; rttMs: number }> {
  const t0 = performance.now();
  await store.client.db('admin').command({ ping: 1 });
  return {
    version: `${store.capabilities.server} ${store.capabilities.version}`,
    rttMs: performance.now() - t0,
  };
}
