// Sharding readiness of the records module on the real store (issue 17 item 4): every command it sends while
// recording (and re-recording, as a retry does), querying, aggregating, exporting and sweeping carries its
// collection's shard key (src/stores/mongo/shard-keys.ts, docs/sharding.md). On a sharded MongoDB that is what
// makes a retried insert meet its first copy on the same shard, and a namespace query go to its own shards.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient, type CommandStartedEvent, type Db } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNamespaces } from '../../../test/factories.js';
import { baseConfig, createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { jobEvents } from '../../../test/record-events.js';
import { systemClock } from '../../platform/clock.js';
import { missingShardKeyFields, SHARD_KEYS } from '../../stores/mongo/shard-keys.js';
import {
  GridFsBlobStore,
  RecorderService,
  RecordsQueryService,
  RecordsRepository,
  RetentionPolicies,
  RetentionService,
} from './index.js';
import { DirectoryStore } from '../../stores/cold/index.js';

const DAY = 86_400_000;
let pg: PgTestSchema;
let mongo: MongoTestDb;
let client: MongoClient;
let db: Db;
let dir: string;
const commands: CommandStartedEvent[] = [];

beforeAll(async () => {
  [pg, mongo] = await Promise.all([createPgTestSchema({ poolSize: 4 }), createMongoTestDb()]);
  dir = await mkdtemp(join(tmpdir(), 'rty-shard-key-'));
  // The same database through a client that reports every command it sends.
  client = new MongoClient(baseConfig.MONGO_URL, { monitorCommands: true, serverSelectionTimeoutMS: 5_000 });
  client.on('commandStarted', (e) => commands.push(e));
  await client.connect();
  db = client.db(mongo.dbName);
});
afterAll(async () => {
  await client?.close();
  await Promise.all([mongo?.drop(), pg?.drop(), rm(dir, { recursive: true, force: true })]);
});

/** The documents or filters of a command on `collection`, each as the server receives it. */
function shapes(e: CommandStartedEvent): Array<{ collection: string; what: string; body: unknown }> {
  const c = e.command as Record<string, unknown>;
  const collection = String(c[e.commandName] ?? '');
  const list = (k: string) => (Array.isArray(c[k]) ? (c[k] as Array<Record<string, unknown>>) : []);
  switch (e.commandName) {
    case 'insert':
      return list('documents').map((d) => ({ collection, what: 'insert', body: d }));
    case 'update':
      return list('updates').map((u) => ({ collection, what: 'update', body: u.q }));
    case 'delete':
      return list('deletes').map((d) => ({ collection, what: 'delete', body: d.q }));
    case 'find':
    case 'count':
    case 'distinct':
      return [{ collection, what: e.commandName, body: c.filter ?? c.query ?? {} }];
    case 'aggregate': {
      const first = (c.pipeline as Array<Record<string, unknown>> | undefined)?.[0];
      return [{ collection, what: 'aggregate', body: first?.$match ?? {} }];
    }
    default:
      return [];
  }
}

describe('records commands carry the shard key', () => {
  it('record, retry, query, aggregate, export and sweep: no command on a sharded collection lacks it', async () => {
    const [a] = await createNamespaces(pg.pool, 1);
    const ns = a!.id;
    await pg.pool.query('update namespaces set retention_days = 30 where id = $1', [ns]);
    const repo = new RecordsRepository(db);
    const blobs = new GridFsBlobStore(db);
    const policies = new RetentionPolicies({ pool: pg.pool, clock: systemClock, cacheMs: 0 });
    const recorder = new RecorderService({
      repo,
      blobs,
      policies,
      log: testLog,
      options: { largePayloadBytes: 1024, maxDocumentBytes: 1 << 22 },
    });
    const events = [0, 1, 2, 3, 4, 5].flatMap((i) =>
      jobEvents({
        namespaceId: ns,
        at: new Date(Date.now() - 10 * DAY + i * 1000),
        logs: 1,
        prompt: `${i}:${'p'.repeat(1500)}`,
      }),
    );
    expect((await recorder.record(events)).every((o) => o.status === 'recorded')).toBe(true);
    // A retry of the same batch (a lost acknowledgement): refused as duplicates, nothing twice.
    await recorder.record(events);
    expect(await repo.jobs.countDocuments({ ns })).toBe(6);

    const query = new RecordsQueryService({ repo, policies, blobs });
    const page = await query.listJobs(ns, {}, { limit: 3 });
    expect(page.items.length).toBe(3);
    const trace = await query.getTrace(ns, page.items[0]!._id);
    expect(trace.job?._id).toBe(page.items[0]!._id);
    await query.aggregate(ns, { groupBy: ['model'], metrics: ['jobs'] } as never).catch(() => undefined);
    const exported = await query.exportJobs(ns, {}, 'jsonl');
    for await (const _chunk of exported) void _chunk;

    await pg.pool.query('update namespaces set retention_days = 7 where id = $1', [ns]);
    const retention = new RetentionService({
      pool: pg.pool,
      repo,
      target: new DirectoryStore(dir),
      clock: systemClock,
      log: testLog,
      options: { fileMaxDocs: 40, deleteBatchSize: 25 },
    });
    expect((await retention.sweep()).deleted).toBeGreaterThan(0);
    expect(await repo.jobs.countDocuments({ ns })).toBe(0);

    const seen = commands.flatMap(shapes).filter((s) => s.collection in SHARD_KEYS);
    const kinds = new Set(seen.map((s) => `${s.what} ${s.collection}`));
    // The run exercised every kind of command on the sharded collections …
    for (const k of [
      'insert record_jobs',
      'insert record_logs',
      'insert record_blobs.files',
      'insert record_blobs.chunks',
      'find record_jobs',
      'delete record_jobs',
      'delete record_logs',
      'delete record_blobs.files',
      'delete record_blobs.chunks',
    ])
      expect(kinds, k).toContain(k);
    // … and none of them lacks its collection's shard key, but for the two reads docs/sharding.md names as
    // scatter-gather: the GridFS driver's emptiness check of the files collection before its first upload, and
    // the retention sweep listing a namespace's old blobs by metadata (a background read, not a write).
    const scatterByDesign = (c: string, what: string, body: unknown) =>
      c === 'record_blobs.files' &&
      what === 'find' &&
      (JSON.stringify(body) === '{}' || Object.keys(body as object).join() === 'metadata.ns,metadata.ts');
    const lacking = seen
      .filter((s) => !scatterByDesign(s.collection, s.what, s.body))
      .map((s) => ({ ...s, missing: missingShardKeyFields(s.collection, s.body) }))
      .filter((s) => s.missing.length > 0)
      .map(
        (s) =>
          `${s.what} ${s.collection} lacks ${s.missing.join(', ')}: ${JSON.stringify(s.body).slice(0, 200)}`,
      );
    expect(lacking).toEqual([]);
  });
});
