// Broker-side connection drops (rabbitmqctl close_connection on our own connections, never a broker
// restart: the broker is shared): unconfirmed publishes are republished, the topology is re-asserted,
// consumers resume, and after dedup by job id every accepted job is processed exactly once.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import {
  createAmqpTestVhost,
  createTcpProxy,
  type AmqpTestVhost,
  type TcpProxy,
} from '../../../test/amqp-harness.js';
import {
  commitOutcome,
  countOutcomes,
  createOutcomeTable,
  makeJob,
  routingOptionsFor,
  waitFor,
} from '../../../test/routing-fixtures.js';
import { connectAmqp, type AmqpConnection } from '../../stores/rabbitmq/connection.js';
import { laneQueueName, QUEUES } from '../../stores/rabbitmq/topology.js';
import { RoutingService } from './index.js';
import { laneKeyOf } from './routing.rules.js';

let db: PgTestSchema;
let vhost: AmqpTestVhost;
let proxy: TcpProxy;
let raw: AmqpConnection;
let routing: RoutingService;

beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 8 });
  await createOutcomeTable(db.pool);
  vhost = await createAmqpTestVhost();
  proxy = await createTcpProxy(vhost.url);
  raw = await connectAmqp(vhost.url, 'test-raw');
  routing = new RoutingService({
    pool: db.pool,
    log: testLog,
    options: routingOptionsFor(proxy.url, { ROUTING_PUBLISH_MAX_IN_FLIGHT: 1000 }, 'rc'),
  });
  await routing.start();
});

afterAll(async () => {
  await routing?.stop();
  await raw?.close().catch(() => undefined);
  await proxy?.close();
  await vhost?.drop();
  await db?.drop();
});

async function readyCount(queues: string[]): Promise<number> {
  const ch = await raw.createChannel();
  try {
    let n = 0;
    for (const q of queues) n += (await ch.checkQueue(q)).messageCount;
    return n;
  } finally {
    await ch.close();
  }
}

it('republishes unconfirmed messages, re-asserts topology and resumes consuming after a server-side drop', async () => {
  const model = 'reconnect-model';
  const invocations = new Map<string, number>();
  await routing.startConsumer({
    name: 'rc-consumer',
    serves: [{ environment: 'testnet', model }],
    concurrency: 16,
    lanePrefetch: 16,
    handler: async (job) => {
      invocations.set(job.jobId, (invocations.get(job.jobId) ?? 0) + 1);
      await commitOutcome(db.pool, job.jobId);
      return { kind: 'done' };
    },
  });

  // Remove part of the static topology: only a re-assert on reconnect brings it back.
  const ch = await raw.createChannel();
  await ch.deleteQueue(QUEUES.quarantine);
  await ch.close();

  const namespaces = [makeJob().namespaceId, makeJob().namespaceId];
  const lanes = namespaces.map((namespaceId) => laneQueueName(laneKeyOf(makeJob({ model, namespaceId }))));
  const jobIds: string[] = [];
  const submit = (): Promise<void> => {
    const job = makeJob({ model, namespaceId: namespaces[jobIds.length % 2]! });
    jobIds.push(job.jobId);
    return routing.submit(job);
  };

  // 1. Normal traffic.
  await Promise.all(Array.from({ length: 1000 }, submit));

  // 2. The broker keeps receiving, but nothing it sends (confirms, deliveries) reaches us any more.
  proxy.freezeDownstream();
  const unconfirmed = Array.from({ length: 300 }, submit);
  // Ready in the lanes (the consumer holds at most 16 unacked per lane): the broker has all 300 ...
  await waitFor('the broker has the 300', async () => (await readyCount(lanes)) >= 300 - 32);
  // ... and the publisher has none of their confirms.
  expect(routing.publisher.stats.inFlight).toBe(300);

  // 3. The broker closes our connections (publisher and consumer); traffic continues during the reconnect.
  expect(await vhost.closeConnections('rc-')).toBe(2);
  const during = Array.from({ length: 1000 }, submit);

  const settled = await Promise.allSettled([...unconfirmed, ...during]);
  expect(settled.filter((x) => x.status === 'rejected')).toEqual([]);
  expect(routing.publisher.stats.republished).toBeGreaterThanOrEqual(300);

  await waitFor('every job committed', async () => (await countOutcomes(db.pool)) === jobIds.length, 90_000);
  // Exactly once after dedup: one committed outcome per accepted job (job id is the key), none missing,
  // none foreign ...
  const committed = await db.pool.query<{ job_id: string }>('select job_id from test_outcomes');
  expect(new Set(committed.rows.map((r) => r.job_id))).toEqual(new Set(jobIds));
  // ... although the 300 whose confirms were lost are in the queue twice and were delivered twice.
  await waitFor('duplicates drained', async () => (await readyCount(lanes)) === 0, 30_000);
  const deliveries = [...invocations.values()].reduce((a, b) => a + b, 0);
  expect(deliveries).toBeGreaterThanOrEqual(jobIds.length + 300);

  const check = await raw.createChannel();
  expect((await check.checkQueue(QUEUES.quarantine)).messageCount).toBe(0); // re-declared
  await check.close();
});
