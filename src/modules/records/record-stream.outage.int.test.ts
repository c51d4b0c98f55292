// A MongoDB outage is not poison: a FerretDB of this test's own (own port, own PostgreSQL database) is killed
// by PID for ~15 s while record events stream in, then restarted; nothing is dead-lettered and every job
// document is there afterwards (batches cut off halfway through a write still build their job documents).
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { MongoClient } from 'mongodb';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAmqpTestVhost, type AmqpTestVhost } from '../../../test/amqp-harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { startOwnFerretDb, type OwnFerretDb } from '../../../test/ferretdb-harness.js';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { jobEvents } from '../../../test/record-events.js';
import { waitFor } from '../../../test/routing-fixtures.js';
import { managedConnections } from '../../../test/record-stream-harness.js';
import { systemClock } from '../../platform/clock.js';
import { QUEUES } from '../../stores/rabbitmq/topology.js';
import {
  GridFsBlobStore,
  RecorderService,
  RecordsRepository,
  RecordStreamConsumer,
  RecordStreamPublisher,
  RetentionPolicies,
} from './index.js';

let pg: PgTestSchema;
let vhost: AmqpTestVhost;
let ferret: OwnFerretDb;
let ns: string;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  [pg, vhost, ferret] = await Promise.all([
    createPgTestSchema({ poolSize: 4 }),
    createAmqpTestVhost(),
    startOwnFerretDb(),
  ]);
  ns = (await createNamespaces(pg.pool, 1))[0]!.id;
});
afterAll(async () => {
  await amqpConnections.stopAll();
  await Promise.allSettled([pg?.drop(), vhost?.drop(), ferret?.destroy()]);
});

const amqpConnections = managedConnections(() => vhost.url);
const connection = amqpConnections.open;

async function ready(queue: string): Promise<number> {
  const conn = await amqp.connect(vhost.url);
  try {
    return (await (await conn.createChannel()).checkQueue(queue)).messageCount;
  } finally {
    await conn.close();
  }
}

describe('records stream: a MongoDB outage is not poison', () => {
  it('FerretDB killed for ~15 s mid-stream and restarted: 0 dead-lettered, every job document present', async () => {
    const client = new MongoClient(ferret.url, {
      serverSelectionTimeoutMS: 1000,
      connectTimeoutMS: 1000,
      socketTimeoutMS: 10_000,
    });
    const db = client.db('records_outage');
    const registry = new Registry();
    const recorder = new RecorderService({
      repo: new RecordsRepository(db),
      blobs: new GridFsBlobStore(db),
      policies: new RetentionPolicies({ pool: pg.pool, clock: systemClock }),
      log: testLog,
      options: { largePayloadBytes: 1024 * 1024, maxDocumentBytes: 4 * 1024 * 1024 },
    });
    const publisher = new RecordStreamPublisher({ connection: await connection('o-pub'), log: testLog });
    const consumer = new RecordStreamConsumer({
      connection: await connection('o-con'),
      recorder,
      log: testLog,
      options: { batchMaxWaitMs: 20, retryDelayMs: 100, maxRetryDelayMs: 1000 },
      registry,
    });
    await consumer.start();
    const ids: string[] = [];
    let stop = false;
    // Events keep streaming (4 jobs every 250 ms) before, during and after the outage.
    const stream = (async () => {
      for (let tick = 0; !stop; tick += 1) {
        const batch: Promise<void>[] = [];
        for (let j = 0; j < 4; j += 1) {
          const jobId = randomUUID();
          ids.push(jobId);
          batch.push(publisher.publish(jobEvents({ namespaceId: ns, jobId, at: new Date() })));
        }
        await Promise.all(batch);
        await sleep(250);
      }
    })();
    try {
      const jobs = db.collection('record_jobs');
      await waitFor('records flowing', async () => (await jobs.countDocuments({})) >= 8, 30_000);
      const failedBefore = consumer.stats.failedAttempts;
      await ferret.kill();
      await sleep(15_000);
      // Records lag shows the outage: held events, the oldest of them older than most of the outage.
      const during = consumer.lag();
      expect(during.heldEvents).toBeGreaterThan(0);
      expect(during.lagSeconds).toBeGreaterThan(5);
      expect(await registry.getSingleMetricAsString('rty_records_lag_seconds')).toMatch(
        /rty_records_lag_seconds [1-9]/,
      );
      await ferret.start();
      await sleep(3_000);
      stop = true;
      await stream;
      // The outage was met (and retried), not skipped.
      expect(consumer.stats.failedAttempts).toBeGreaterThan(failedBefore);
      await waitFor(
        `all ${ids.length} job documents`,
        async () => (await jobs.countDocuments({ _id: { $in: ids } } as never)) === ids.length,
        120_000,
      );
      expect(consumer.stats.deadLettered).toBe(0);
      expect(await ready(QUEUES.recordsDead)).toBe(0);
      await waitFor('caught up', () => consumer.lag().heldEvents === 0);
      expect(consumer.lag().lagSeconds).toBe(0);
    } finally {
      stop = true;
      await stream.catch(() => undefined);
      await consumer.stop();
      await publisher.stop();
      await client.close();
    }
  });
});
