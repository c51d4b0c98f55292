// Poison isolation in the records stream on the real RabbitMQ, FerretDB and PostgreSQL: values the store
// cannot hold are encoded (every job gets its document), a batch that still fails is bisected at once so
// only the failing event is dead-lettered, and `records dead list|replay|purge` work on that queue.
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import type { Db } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAmqpTestVhost, type AmqpTestVhost } from '../../../test/amqp-harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { jobEvents } from '../../../test/record-events.js';
import { waitFor } from '../../../test/routing-fixtures.js';
import { managedConnections, testRecorder } from '../../../test/record-stream-harness.js';
import { EXCHANGES, QUEUES, RECORDS_ROUTING_KEY } from '../../stores/rabbitmq/topology.js';
import {
  listDeadRecords,
  purgeDeadRecords,
  readRecordsBacklog,
  RecordsRepository,
  RecordStreamConsumer,
  RecordStreamPublisher,
  replayDeadRecords,
  type BatchRecorder,
  type JobDoc,
  type RecordEventInput,
} from './index.js';
import { presentJob } from './record.js';

let pg: PgTestSchema;
let mongo: MongoTestDb;
let vhost: AmqpTestVhost;
let nsA: string;
let nsB: string;

beforeAll(async () => {
  [pg, mongo, vhost] = await Promise.all([
    createPgTestSchema({ poolSize: 4 }),
    createMongoTestDb(),
    createAmqpTestVhost(),
  ]);
  [nsA, nsB] = (await createNamespaces(pg.pool, 2)).map((n) => n.id) as [string, string];
});
afterAll(async () => {
  await amqpConnections.stopAll();
  await Promise.allSettled([pg?.drop(), mongo?.drop(), vhost?.drop()]);
});

const amqpConnections = managedConnections(() => vhost.url);
const connection = amqpConnections.open;

const recorderOn = (db: Db) => testRecorder(db, pg.pool);

const repo = () => new RecordsRepository(mongo.store.db);
const jobDoc = (ns: string, id: string) =>
  repo().jobs.findOne({ ns, _id: id } as never) as Promise<JobDoc | null>;
const countJobs = (ids: string[]) => repo().jobs.countDocuments({ _id: { $in: ids } } as never);

async function ready(queue: string): Promise<number> {
  const conn = await amqp.connect(vhost.url);
  try {
    return (await (await conn.createChannel()).checkQueue(queue)).messageCount;
  } finally {
    await conn.close();
  }
}

function normalJobs(ns: string, n: number): { ids: string[]; events: RecordEventInput[] } {
  const ids: string[] = [];
  const events: RecordEventInput[] = [];
  for (let i = 0; i < n; i += 1) {
    const jobId = randomUUID();
    ids.push(jobId);
    events.push(...jobEvents({ namespaceId: ns, jobId, at: new Date(Date.now() - 60_000 + i) }));
  }
  return { ids, events };
}

function deeplyNested(levels: number): unknown {
  let v: unknown = 'the bottom';
  for (let i = 0; i < levels; i += 1) v = { properties: v };
  return v;
}

describe('records stream: poison isolation', () => {
  it('200 normal jobs of two namespaces and 5 poisoned ones in one burst give 205 documents, the 5 encoded, none dead-lettered', async () => {
    const a = normalJobs(nsA, 100);
    const b = normalJobs(nsB, 100);
    const poisoned = [
      { name: 'nul', prompt: 'hello\u0000world', params: { temperature: 0.1 } },
      { name: 'nested arrays', prompt: 'tools', params: { tools: [{ schema: { enum: [[1, 2], ['a']] } }] } },
      { name: 'deep', prompt: 'deep', params: { schema: deeplyNested(5000) } },
      { name: 'lone surrogate', prompt: 'half \ud83d of an emoji', params: {} },
      { name: 'keys', prompt: 'keys', params: { 'a.b': 1, $where: 'x', 'n\u0000k': [[0]] } },
    ].map((p, i) => ({ ...p, jobId: randomUUID(), ns: i % 2 ? nsB : nsA }));
    const poisonEvents = poisoned.flatMap((p) =>
      jobEvents({ namespaceId: p.ns, jobId: p.jobId, at: new Date(), prompt: p.prompt, params: p.params }),
    );
    // A NUL in the answer and the error too.
    const finished = poisonEvents.find((e) => e.jobId === poisoned[0]!.jobId && e.type === 'job.finished')!;
    (finished as { output: { text: string } }).output.text = 'answer\u0000with nul';

    const publisher = new RecordStreamPublisher({ connection: await connection('p-pub'), log: testLog });
    const consumer = new RecordStreamConsumer({
      connection: await connection('p-con'),
      recorder: recorderOn(mongo.store.db),
      log: testLog,
      options: { batchMaxWaitMs: 20 },
    });
    await consumer.start();
    try {
      // One burst: every job's events in the same tick, so poisoned and innocent jobs share messages.
      const all = [...a.events, ...b.events, ...poisonEvents];
      const perJob = new Map<string, RecordEventInput[]>();
      for (const e of all) perJob.set(e.jobId, [...(perJob.get(e.jobId) ?? []), e]);
      await Promise.all([...perJob.values()].map((evs) => publisher.publish(evs)));
      expect(publisher.stats.messages).toBeLessThan(perJob.size / 10);

      const ids = [...a.ids, ...b.ids, ...poisoned.map((p) => p.jobId)];
      await waitFor('205 job documents', async () => (await countJobs(ids)) === 205, 60_000);
      await waitFor('every event settled', () => consumer.stats.events === all.length, 30_000);
      expect(consumer.stats.deadLettered).toBe(0);
      expect(await repo().jobs.countDocuments({ ns: nsA, _id: { $in: a.ids } } as never)).toBe(100);
      expect(await repo().jobs.countDocuments({ ns: nsB, _id: { $in: b.ids } } as never)).toBe(100);

      // The stored documents show what was asked, encoded; read back, they are what was asked.
      const [nul, nested, deep, lone, keys] = await Promise.all(poisoned.map((p) => jobDoc(p.ns, p.jobId)));
      expect(JSON.stringify(nul!.input)).toContain('__text__');
      const shownNul = presentJob(nul!);
      expect(shownNul.input.messages).toEqual([{ role: 'user', content: 'hello\u0000world' }]);
      expect(shownNul.output.text).toBe('answer\u0000with nul');
      expect(JSON.stringify(nested!.input)).toContain('__array__');
      expect(presentJob(nested!).input.params).toEqual(poisoned[1]!.params);
      const deepText = JSON.stringify(deep!.input);
      expect(deepText).toContain('__deep__');
      expect(deepText).toContain('the bottom');
      expect(presentJob(lone!).input.messages).toEqual([
        { role: 'user', content: 'half \ud83d of an emoji' },
      ]);
      expect(presentJob(keys!).input.params).toEqual(poisoned[4]!.params);
    } finally {
      await consumer.stop();
      await publisher.stop();
    }
    expect(await ready(QUEUES.records)).toBe(0);
    expect(await ready(QUEUES.recordsDead)).toBe(0);
  });

  it('a batch that fails is bisected at once: only the failing event is dead-lettered (with its reason); list, replay and purge work', async () => {
    const { ids, events } = normalJobs(nsA, 30);
    const poisonJob = randomUUID();
    const poisonEvents = jobEvents({ namespaceId: nsB, jobId: poisonJob, at: new Date() });
    const poisonFinished = poisonEvents.find((e) => e.type === 'job.finished')!;
    const real = recorderOn(mongo.store.db);
    let refuse = true;
    let calls = 0;
    // Refuses (as a store would, with an error no classification knows) any batch holding the finished event
    // of one job; everything else is written for real.
    const recorder: BatchRecorder = {
      ping: () => real.ping(),
      async record(batch) {
        calls += 1;
        if (
          refuse &&
          batch.some((e) => e === poisonFinished || JSON.stringify(e) === JSON.stringify(poisonFinished))
        )
          throw new Error('simulated: document failed validation');
        return real.record(batch);
      },
    };
    const publisher = new RecordStreamPublisher({ connection: await connection('i-pub'), log: testLog });
    // A back-off would stall this test for minutes: isolation must not wait for it.
    const consumer = new RecordStreamConsumer({
      connection: await connection('i-con'),
      recorder,
      log: testLog,
      options: { batchMaxWaitMs: 20, retryDelayMs: 600_000, maxRetryDelayMs: 600_000 },
    });
    await consumer.start();
    const amqpConn = await amqp.connect(vhost.url);
    try {
      await Promise.all([
        ...ids.map((id) => publisher.publish(events.filter((e) => e.jobId === id))),
        publisher.publish(poisonEvents),
      ]);
      await waitFor('30 innocent jobs recorded', async () => (await countJobs(ids)) === 30, 30_000);
      await waitFor('the failing event dead-lettered', () => consumer.stats.deadLettered === 1, 30_000);
      expect(calls).toBeGreaterThan(1);
      // The poisoned job's other events were recorded; its document waits for the finished event.
      expect(await repo().logs.countDocuments({ ns: nsB, jobId: poisonJob })).toBe(poisonEvents.length - 1);
      expect(await jobDoc(nsB, poisonJob)).toBeNull();
      await waitFor('dead letter queued', async () => (await ready(QUEUES.recordsDead)) === 1);

      const listed = await listDeadRecords(amqpConn, 100);
      expect(listed).toHaveLength(1);
      expect(listed[0]).toMatchObject({
        events: 1,
        from: QUEUES.records,
        routingKey: RECORDS_ROUTING_KEY,
        jobs: [{ namespaceId: nsB, jobId: poisonJob, type: 'job.finished' }],
      });
      expect(listed[0]!.reason).toMatch(/simulated: document failed validation/);
      expect(await ready(QUEUES.recordsDead)).toBe(1); // listing removes nothing
      expect(await readRecordsBacklog(amqpConn)).toEqual({ queuedMessages: 0, deadLetteredMessages: 1 });

      refuse = false; // the cause is fixed: a replay records it
      expect(await replayDeadRecords(amqpConn, 100)).toBe(1);
      await waitFor('replayed job document', async () => (await jobDoc(nsB, poisonJob)) !== null);
      expect(await ready(QUEUES.recordsDead)).toBe(0);

      // Purge: a message that breaks the envelope is dead-lettered, then purged.
      const ch = await amqpConn.createConfirmChannel();
      await new Promise<void>((resolve, reject) =>
        ch.publish(
          EXCHANGES.events,
          RECORDS_ROUTING_KEY,
          Buffer.from('not json'),
          { persistent: true },
          (e) => (e ? reject(e) : resolve()),
        ),
      );
      await ch.close();
      await waitFor('broken envelope dead-lettered', async () => (await ready(QUEUES.recordsDead)) === 1);
      expect(await purgeDeadRecords(amqpConn, 100)).toBe(1);
      expect(await ready(QUEUES.recordsDead)).toBe(0);
    } finally {
      await amqpConn.close();
      await consumer.stop();
      await publisher.stop();
    }
    expect(consumer.stats.deadLettered).toBe(2);
  });

  it('a lone event failing with an unclassified error is retried (short back-off) and recorded, not dead-lettered', async () => {
    const jobId = randomUUID();
    const lone = jobEvents({ namespaceId: nsA, jobId, at: new Date() })[0]!;
    const real = recorderOn(mongo.store.db);
    let failures = 0;
    const recorder: BatchRecorder = {
      ping: () => real.ping(),
      async record(batch) {
        // The first two tries fail with an error no classification knows (the store still answers its ping).
        if (failures < 2 && batch.some((e) => JSON.stringify(e) === JSON.stringify(lone))) {
          failures += 1;
          throw new Error('simulated: passing hiccup');
        }
        return real.record(batch);
      },
    };
    const publisher = new RecordStreamPublisher({ connection: await connection('s-pub'), log: testLog });
    const consumer = new RecordStreamConsumer({
      connection: await connection('s-con'),
      recorder,
      log: testLog,
      options: { batchMaxWaitMs: 20, retryDelayMs: 600_000, maxRetryDelayMs: 600_000 },
    });
    await consumer.start();
    try {
      await publisher.publish([lone]);
      await waitFor('lone event recorded', () => consumer.stats.recorded === 1, 30_000);
      expect(failures).toBe(2);
      expect(consumer.stats.deadLettered).toBe(0);
      expect(await repo().logs.countDocuments({ ns: nsA, jobId })).toBe(1);
    } finally {
      await consumer.stop();
      await publisher.stop();
    }
    expect(await ready(QUEUES.recordsDead)).toBe(0);
  });
});
