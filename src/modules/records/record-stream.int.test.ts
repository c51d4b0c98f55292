// The records stream on the real RabbitMQ, MongoDB (FerretDB) and PostgreSQL: record events published through
// the sink become job documents; redelivery and duplicates change nothing; with MongoDB unreachable the events
// stay queued and are recorded once a healthy consumer runs; a message that breaks the contract is dead-lettered.
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAmqpTestVhost, type AmqpTestVhost } from '../../../test/amqp-harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { jobEvents } from '../../../test/record-events.js';
import { waitFor } from '../../../test/routing-fixtures.js';
import { managedConnections, testRecorder } from '../../../test/record-stream-harness.js';
import { AppError } from '../../platform/errors.js';
import { EXCHANGES, QUEUES, RECORDS_ROUTING_KEY } from '../../stores/rabbitmq/topology.js';
import type { Db } from 'mongodb';
import {
  RecordsRepository,
  RecordStreamConsumer,
  RecordStreamPublisher,
  type BatchRecorder,
  type RecordEventInput,
} from './index.js';

let pg: PgTestSchema;
let mongo: MongoTestDb;
let vhost: AmqpTestVhost;
let ns: string;

beforeAll(async () => {
  [pg, mongo, vhost] = await Promise.all([
    createPgTestSchema({ poolSize: 4 }),
    createMongoTestDb(),
    createAmqpTestVhost(),
  ]);
  ns = (await createNamespaces(pg.pool, 1))[0]!.id;
});
afterAll(async () => {
  await amqpConnections.stopAll();
  await Promise.allSettled([pg?.drop(), mongo?.drop(), vhost?.drop()]);
});

const amqpConnections = managedConnections(() => vhost.url);
const connection = amqpConnections.open;

const recorderOn = (db: Db) => testRecorder(db, pg.pool);

const repo = () => new RecordsRepository(mongo.store.db);
const jobDocs = (jobIds: string[]) => repo().jobs.countDocuments({ ns, _id: { $in: jobIds } } as never);
const logDocs = (jobIds: string[]) => repo().logs.countDocuments({ ns, jobId: { $in: jobIds } });

/** Ready messages of a queue (unacked ones are not counted by the broker). */
async function ready(queue: string): Promise<number> {
  const conn = await amqp.connect(vhost.url);
  try {
    const ch = await conn.createChannel();
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await conn.close();
  }
}

function someJobs(n: number): { ids: string[]; events: RecordEventInput[] } {
  const ids: string[] = [];
  const events: RecordEventInput[] = [];
  for (let i = 0; i < n; i += 1) {
    const jobId = randomUUID();
    ids.push(jobId);
    events.push(...jobEvents({ namespaceId: ns, jobId, at: new Date(Date.now() - 60_000 + i) }));
  }
  return { ids, events };
}

describe('records stream (RabbitMQ → recorder → MongoDB)', () => {
  it('events published through the sink become job documents; a redelivered batch and republished events change nothing', async () => {
    const publisher = new RecordStreamPublisher({ connection: await connection('rs-pub-1'), log: testLog });
    const { ids, events } = someJobs(6);
    // One call per job (as the job flow emits) in the same tick: they share messages.
    await Promise.all(ids.map((id) => publisher.publish(events.filter((e) => e.jobId === id))));
    expect(publisher.stats.events).toBe(events.length);
    expect(publisher.stats.messages).toBeLessThan(ids.length);

    // The first recorder call succeeds in MongoDB but "loses" its ack (fails afterwards): the same batch is
    // recorded again, as a broker redelivery would.
    const real = recorderOn(mongo.store.db);
    let calls = 0;
    const recorder: BatchRecorder = {
      async record(batch) {
        const out = await real.record(batch);
        calls += 1;
        if (calls === 1) throw new AppError('store_unavailable', 'test: ack lost after the write');
        return out;
      },
    };
    const consumer = new RecordStreamConsumer({
      connection: await connection('rs-con-1'),
      recorder,
      log: testLog,
      options: { batchMaxWaitMs: 20, retryDelayMs: 20 },
    });
    await consumer.start();
    try {
      await waitFor('job documents', async () => (await jobDocs(ids)) === ids.length);
      await waitFor('batch acked', () => consumer.stats.events === events.length);
      expect(consumer.stats.failedAttempts).toBe(1);
      const logsBefore = await logDocs(ids);

      await publisher.publish(events); // the same events again
      await waitFor('duplicates consumed', () => consumer.stats.events === 2 * events.length);
      expect(consumer.stats.recorded).toBe(events.length - consumer.stats.duplicates + events.length);
      expect(await jobDocs(ids)).toBe(ids.length);
      expect(await logDocs(ids)).toBe(logsBefore);
      const doc = await repo().jobs.findOne({ ns, _id: ids[0] } as never);
      expect(doc).toMatchObject({ status: 'succeeded' });
    } finally {
      await consumer.stop();
      await publisher.stop();
    }
    expect(await ready(QUEUES.records)).toBe(0);
    expect(await ready(QUEUES.recordsDead)).toBe(0);
  });

  it('with MongoDB unreachable the events stay queued; a healthy consumer records them later', async () => {
    const publisher = new RecordStreamPublisher({ connection: await connection('rs-pub-2'), log: testLog });
    const { ids, events } = someJobs(4);
    await Promise.all(ids.map((id) => publisher.publish(events.filter((e) => e.jobId === id))));
    const messages = publisher.stats.messages;

    const unreachable = new MongoClient('mongodb://127.0.0.1:1/', {
      serverSelectionTimeoutMS: 200,
      connectTimeoutMS: 200,
    });
    const down = new RecordStreamConsumer({
      connection: await connection('rs-con-down'),
      recorder: recorderOn(unreachable.db('unreachable')),
      log: testLog,
      options: { batchMaxWaitMs: 10, retryDelayMs: 20, maxRetryDelayMs: 50 },
    });
    await down.start();
    try {
      await waitFor('retries during the outage', () => down.stats.failedAttempts >= 3);
      // Transient failures are retried, never dead-lettered.
      expect(down.stats.deadLettered).toBe(0);
      expect(down.stats.events).toBe(0);
    } finally {
      await down.stop();
      await unreachable.close();
    }
    expect(await jobDocs(ids)).toBe(0);
    expect(await ready(QUEUES.records)).toBe(messages); // requeued on stop, nothing lost

    const healthy = new RecordStreamConsumer({
      connection: await connection('rs-con-up'),
      recorder: recorderOn(mongo.store.db),
      log: testLog,
      options: { batchMaxWaitMs: 10 },
    });
    await healthy.start();
    try {
      await waitFor('recorded after the outage', async () => (await jobDocs(ids)) === ids.length);
      await waitFor('acked', () => healthy.stats.events === events.length);
    } finally {
      await healthy.stop();
      await publisher.stop();
    }
    expect(await ready(QUEUES.records)).toBe(0);
  });

  it('a message that breaks the envelope and an event that breaks the contract go to the dead-letter queue; the rest is recorded', async () => {
    const { ids, events } = someJobs(1);
    const conn = await amqp.connect(vhost.url);
    const ch = await conn.createConfirmChannel();
    const send = (body: string) =>
      new Promise<void>((resolve, reject) =>
        ch.publish(EXCHANGES.events, RECORDS_ROUTING_KEY, Buffer.from(body), { persistent: true }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    const badEvent = { ...events[0]!, namespaceId: 'not-a-uuid' };
    await send('{"this is": not json');
    await send(JSON.stringify({ v: 2, events: events }));
    await send(JSON.stringify({ v: 1, events: [badEvent, ...events] }));
    await ch.close();

    const consumer = new RecordStreamConsumer({
      connection: await connection('rs-con-3'),
      recorder: recorderOn(mongo.store.db),
      log: testLog,
      options: { batchMaxWaitMs: 10 },
    });
    await consumer.start();
    try {
      await waitFor('all three handled', async () => consumer.stats.deadLettered === 3);
      await waitFor('job document', async () => (await jobDocs(ids)) === 1);
    } finally {
      await consumer.stop();
    }
    expect(await ready(QUEUES.records)).toBe(0);
    const dead = await conn.createChannel();
    const reasons: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      const m = await dead.get(QUEUES.recordsDead, { noAck: true });
      if (!m) break;
      reasons.push(String(m.properties.headers?.['x-rty-reason']));
    }
    await conn.close();
    expect(reasons).toHaveLength(3);
    expect(reasons[0]).toMatch(/not JSON/);
    expect(reasons[1]).toMatch(/envelope: v: /);
    expect(reasons[2]).toMatch(/namespaceId/);
  });
  it("the routing layer's lifecycle events become routing/error logs; a broken one is dead-lettered", async () => {
    const jobId = randomUUID();
    const eventId = randomUUID();
    const conn = await amqp.connect(vhost.url);
    const ch = await conn.createConfirmChannel();
    const send = (key: string, body: unknown) =>
      new Promise<void>((resolve, reject) =>
        ch.publish(EXCHANGES.events, key, Buffer.from(JSON.stringify(body)), { persistent: true }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    const event = {
      v: 1,
      eventId,
      type: 'quarantined',
      jobId,
      namespaceId: ns,
      model: 'llama3-8b',
      environment: 'testnet',
      attempt: 3,
      at: new Date().toISOString(),
      reason: 'no eligible node',
    };
    await send('job.quarantined', event);
    await send('job.quarantined', event); // a duplicate changes nothing
    await send('job.completed', { v: 1, type: 'completed' });
    await ch.close();
    const consumer = new RecordStreamConsumer({
      connection: await connection('rs-con-4'),
      recorder: recorderOn(mongo.store.db),
      log: testLog,
      options: { batchMaxWaitMs: 10 },
    });
    await consumer.start();
    try {
      await waitFor('handled', () => consumer.stats.events + consumer.stats.deadLettered === 3);
    } finally {
      await consumer.stop();
    }
    const logs = await repo().logs.find({ ns, jobId }).toArray();
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatchObject({ logType: 'error', model: 'llama3-8b' });
    expect(consumer.stats).toMatchObject({ recorded: 1, duplicates: 1, deadLettered: 1 });
    expect(await ready(QUEUES.recorderEvents)).toBe(0);
    const dead = await conn.createChannel();
    const m = await dead.get(QUEUES.recordsDead, { noAck: true });
    await conn.close();
    expect(String(m && m.properties.headers?.['x-rty-reason'])).toMatch(/job event contract/);
  });
});
