// Deployment isolation of the records stream on one RabbitMQ vhost: two deployments (own names, own MongoDB
// databases) each record only their own jobs, and a backbone with the same names but other stores is
// refused at start (until the first one is gone: the marker leaves nothing behind).
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
import { QUEUES, topologyNames } from '../../stores/rabbitmq/topology.js';
import {
  RecordStreamConsumer,
  RecordStreamPublisher,
  recordStreamDeployment,
  type RecordEventInput,
} from './index.js';
import { baseConfig } from '../../../test/harness.js';

let pg: PgTestSchema;
let mongoA: MongoTestDb;
let mongoB: MongoTestDb;
let vhost: AmqpTestVhost;
let ns: string;

beforeAll(async () => {
  [pg, mongoA, mongoB, vhost] = await Promise.all([
    createPgTestSchema({ poolSize: 4 }),
    createMongoTestDb(),
    createMongoTestDb(),
    createAmqpTestVhost(),
  ]);
  ns = (await createNamespaces(pg.pool, 1))[0]!.id;
});
afterAll(async () => {
  await amqpConnections.stopAll();
  await Promise.allSettled([pg?.drop(), mongoA?.drop(), mongoB?.drop(), vhost?.drop()]);
});

const amqpConnections = managedConnections(() => vhost.url);
const connection = amqpConnections.open;

const recorderOn = (db: Db) => testRecorder(db, pg.pool);

/** One deployment's records stream (what the workers role and the job flow's sink build from config). */
async function deployment(name: string, mongo: MongoTestDb) {
  const d = recordStreamDeployment({
    ...baseConfig,
    DEPLOYMENT: name,
    MONGO_DB: mongo.dbName,
    POSTGRES_SCHEMA: pg.schema,
  });
  const options = { names: d.names, deploymentStores: d.stores };
  const publisher = new RecordStreamPublisher({
    connection: await connection(`${name}-pub`),
    log: testLog,
    ...options,
  });
  const consumer = new RecordStreamConsumer({
    connection: await connection(`${name}-con`),
    recorder: recorderOn(mongo.store.db),
    log: testLog,
    options: { batchMaxWaitMs: 20 },
    ...options,
  });
  await consumer.start();
  await publisher.start();
  return { publisher, consumer, d };
}

function someJobs(n: number): { ids: string[]; events: RecordEventInput[] } {
  const ids: string[] = [];
  const events: RecordEventInput[] = [];
  for (let i = 0; i < n; i += 1) {
    const jobId = randomUUID();
    ids.push(jobId);
    events.push(...jobEvents({ namespaceId: ns, jobId, at: new Date() }));
  }
  return { ids, events };
}

const jobIdsIn = async (m: MongoTestDb) =>
  new Set(
    (await m.store.db.collection('record_jobs').find({}).project({ _id: 1 }).toArray()).map((d) =>
      String(d._id),
    ),
  );

describe('records stream: deployments on one vhost', () => {
  it('two deployments each record only their own jobs; the same names with other stores are refused', async () => {
    const alpha = await deployment('alpha', mongoA);
    const beta = await deployment('beta', mongoB);
    try {
      expect(alpha.d.names.queues.records).toBe('alpha.rty.records');
      const a = someJobs(20);
      const b = someJobs(20);
      await Promise.all([alpha.publisher.publish(a.events), beta.publisher.publish(b.events)]);
      await waitFor('alpha recorded', async () => (await jobIdsIn(mongoA)).size === 20);
      await waitFor('beta recorded', async () => (await jobIdsIn(mongoB)).size === 20);
      await waitFor(
        'all consumed',
        () => alpha.consumer.stats.events + beta.consumer.stats.events === a.events.length + b.events.length,
      );
      expect([...(await jobIdsIn(mongoA))].sort()).toEqual([...a.ids].sort());
      expect([...(await jobIdsIn(mongoB))].sort()).toEqual([...b.ids].sort());
      expect(alpha.consumer.stats.events).toBe(a.events.length);
      expect(beta.consumer.stats.events).toBe(b.events.length);

      // Same names as alpha, other stores (beta's database): refused at start, with what to set.
      const d = recordStreamDeployment({
        ...baseConfig,
        DEPLOYMENT: 'alpha',
        MONGO_DB: mongoB.dbName,
        POSTGRES_SCHEMA: pg.schema,
      });
      const intruder = new RecordStreamConsumer({
        connection: await connection('alpha-intruder'),
        recorder: recorderOn(mongoB.store.db),
        log: testLog,
        names: d.names,
        deploymentStores: d.stores,
      });
      await expect(intruder.start()).rejects.toThrow(/other stores.*set DEPLOYMENT/);
      await intruder.stop();
    } finally {
      await Promise.all([alpha.consumer.stop(), beta.consumer.stop()]);
      await Promise.all([alpha.publisher.stop(), beta.publisher.stop()]);
    }
    // Nothing reached the unprefixed (default deployment's) queues.
    const conn = await amqp.connect(vhost.url);
    try {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      await expect(ch.checkQueue(QUEUES.records)).rejects.toThrow(/NOT_FOUND/);
    } finally {
      await conn.close().catch(() => undefined);
    }

    // Once every holder of alpha's marker is gone (connections closed), alpha's names are free again.
    await amqpConnections.stopAll();
    const again = recordStreamDeployment({
      ...baseConfig,
      DEPLOYMENT: 'alpha',
      MONGO_DB: mongoB.dbName,
      POSTGRES_SCHEMA: pg.schema,
    });
    const next = new RecordStreamConsumer({
      connection: await connection('alpha-next'),
      recorder: recorderOn(mongoB.store.db),
      log: testLog,
      names: again.names,
      deploymentStores: again.stores,
    });
    await next.start();
    await next.stop();
    expect(topologyNames('').queues.records).toBe(QUEUES.records);
  });

  it("a stopped deployment's backlog is refused by the same names with other stores, and taken by its own restart", async () => {
    const gammaOn = (m: MongoTestDb) =>
      recordStreamDeployment({
        ...baseConfig,
        DEPLOYMENT: 'gamma',
        MONGO_DB: m.dbName,
        POSTGRES_SCHEMA: pg.schema,
      });
    const own = gammaOn(mongoA);
    const publishAndStop = async (events: RecordEventInput[]) => {
      const c = await connection('gamma-pub');
      const publisher = new RecordStreamPublisher({
        connection: c,
        log: testLog,
        names: own.names,
        deploymentStores: own.stores,
      });
      await publisher.start();
      await publisher.publish(events);
      await publisher.stop();
      await c.stop(); // the process is gone: its marker holder queue with it, its backlog stays
    };
    const consumerOn = async (m: MongoTestDb) => {
      const d = gammaOn(m);
      const c = await connection('gamma-con');
      const consumer = new RecordStreamConsumer({
        connection: c,
        recorder: recorderOn(m.store.db),
        log: testLog,
        options: { batchMaxWaitMs: 20 },
        names: d.names,
        deploymentStores: d.stores,
      });
      await consumer.start();
      return { consumer, c };
    };
    const first = someJobs(5);
    await publishAndStop(first.events);
    const before = (await jobIdsIn(mongoB)).size;
    // Same names, other stores: the marker is gone, but every message of the backlog is refused.
    const intruder = await consumerOn(mongoB);
    await waitFor(
      'backlog dead-lettered',
      () => intruder.consumer.stats.deadLettered === first.events.length,
    );
    await intruder.consumer.stop();
    await intruder.c.stop();
    expect(intruder.consumer.stats.recorded).toBe(0);
    expect((await jobIdsIn(mongoB)).size).toBe(before);
    const conn = await amqp.connect(vhost.url);
    try {
      const ch = await conn.createChannel();
      const dead = await ch.get(own.names.queues.recordsDead, { noAck: true });
      expect(dead && String(dead.properties.headers?.['x-rty-reason'])).toMatch(/other stores/);
    } finally {
      await conn.close().catch(() => undefined);
    }
    // The deployment itself restarts (same stores): its new backlog is recorded.
    const second = someJobs(5);
    await publishAndStop(second.events);
    const restarted = await consumerOn(mongoA);
    try {
      await waitFor('restart recorded', () => restarted.consumer.stats.events === second.events.length);
      expect(restarted.consumer.stats.deadLettered).toBe(0);
      const ids = await jobIdsIn(mongoA);
      for (const id of second.ids) expect(ids.has(id)).toBe(true);
    } finally {
      await restarted.consumer.stop();
      await restarted.c.stop();
    }
  });
});
