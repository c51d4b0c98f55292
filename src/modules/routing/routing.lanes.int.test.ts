// On-demand lanes: created by the first job of a routing class and namespace, let go by consumers when idle,
// deleted by pruning (if empty and unused) and forgotten in the registry, and re-created by the next job (through the
// unroutable-return path when a publisher still had the lane cached).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createAmqpTestVhost, type AmqpTestVhost } from '../../../test/amqp-harness.js';
import { makeJob, routingOptionsFor, waitFor } from '../../../test/routing-fixtures.js';
import { connectAmqp, type AmqpConnection } from '../../stores/rabbitmq/connection.js';
import { laneQueueName } from '../../stores/rabbitmq/topology.js';
import { laneKeyOf, RoutingService, type JobMessage } from './index.js';

let db: PgTestSchema;
let vhost: AmqpTestVhost;
let raw: AmqpConnection;
let routing: RoutingService;
const LANE_EXPIRES_MS = 60_000; // the broker-side safety net; pruning is what removes lanes here

beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 4 });
  vhost = await createAmqpTestVhost();
  raw = await connectAmqp(vhost.url, 'test-raw');
  const base = routingOptionsFor(vhost.url);
  routing = new RoutingService({
    pool: db.pool,
    log: testLog,
    // Short idle times for the test (config enforces minutes in production).
    options: {
      ...base,
      topology: { ...base.topology, jobTtlMaxMs: 1000, laneExpiresMs: LANE_EXPIRES_MS },
      jobTtlMaxMs: 1000,
      lanePollMs: 100,
      laneIdleMs: 300,
    },
  });
  await routing.start();
});

afterAll(async () => {
  await routing?.stop();
  await raw?.close().catch(() => undefined);
  await vhost?.drop();
  await db?.drop();
});

async function laneExists(queue: string): Promise<boolean> {
  const ch = await raw.createChannel();
  ch.on('error', () => undefined);
  try {
    await ch.checkQueue(queue);
    await ch.close();
    return true;
  } catch {
    return false; // 404 closed the channel
  }
}

it('an idle lane is released, pruned, and comes back with the next job', async () => {
  const model = 'seasonal-model';
  const ns = makeJob().namespaceId;
  const handled: JobMessage[] = [];
  await routing.startConsumer({
    serves: [{ environment: 'testnet', model }],
    handler: async (job) => {
      handled.push(job);
      return { kind: 'done' };
    },
  });
  const first = makeJob({ model, namespaceId: ns, ttlMs: 1000 });
  const lane = laneQueueName(laneKeyOf(first));
  await routing.submit(first);
  await waitFor('first handled', () => handled.length === 1);

  // No traffic: the consumer lets the lane go; pruning deletes it (refused while a consumer holds it or
  // while it has messages) and forgets it in the registry.
  // A prune whose task lock was lost (aborted signal) touches nothing, even once the lane is prunable.
  const lockLost = AbortSignal.abort();
  let abortedPrunes = 0;
  await waitFor(
    'idle lane pruned',
    async () => {
      abortedPrunes += await routing.pruneIdleLanes(new Date(), lockLost);
      return (await routing.pruneIdleLanes()) === 1;
    },
    15_000,
  );
  expect(abortedPrunes).toBe(0);
  expect(await laneExists(lane)).toBe(false);
  expect((await routing.health()).queues.some((q) => q.queue === lane)).toBe(false);

  // The publisher still has the lane cached: the job comes back unroutable, the lane is declared again,
  // announced, attached by the consumer, and the job is delivered.
  const returnedBefore = routing.publisher.stats.returned;
  const second = makeJob({ model, namespaceId: ns, ttlMs: 1000 });
  await routing.submit(second);
  expect(routing.publisher.stats.returned).toBeGreaterThan(returnedBefore);
  await waitFor('second handled', () => handled.some((j) => j.jobId === second.jobId));
  expect(await laneExists(lane)).toBe(true);
});

it('never prunes a lane that still holds jobs', async () => {
  const job = makeJob({ model: 'busy-model', ttlMs: 1000 });
  const lane = laneQueueName(laneKeyOf(job));
  await routing.submit(job);
  const anHourLater = new Date(Date.now() + 3_600_000); // the lane counts as idle by its registry row
  expect(await routing.pruneIdleLanes(anHourLater)).toBe(0);
  expect(await laneExists(lane)).toBe(true);
});
