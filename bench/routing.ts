// `npm run bench -- routing`: persistent, confirmed publish -> consume -> ack through the routing layer vs raw
// amqplib in the same run, same message size, same queue type and arguments, same publish window and
// prefetch. Alternates raw / routing for a few rounds and reports medians (ratio: median of per-round ratios).
// Runs in a vhost of its own, deleted at the end with every queue of the run.
import amqp from 'amqplib';
import { randomUUID } from 'node:crypto';
import { createAmqpTestVhost } from '../test/amqp-harness.js';
import { createPgTestSchema } from '../test/harness.js';
import { makeJob, routingOptionsFor } from '../test/routing-fixtures.js';
import { createLogger } from '../src/platform/logger.js';
import { RoutingService, type JobMessage } from '../src/modules/routing/index.js';
import { encodeJob } from '../src/modules/routing/routing.contracts.js';
import { laneTopology, type TopologyOptions } from '../src/stores/rabbitmq/topology.js';
import { benchLine, round } from './stats.js';

const MESSAGES = 10_000;
const ROUNDS = 5;
const WINDOW = 2000; // unconfirmed publishes in flight (ROUTING_PUBLISH_MAX_IN_FLIGHT)
const PREFETCH = 64; // unacked per queue (ROUTING_LANE_PREFETCH) and consumer concurrency
const DEADLINE_MS = 60_000; // per run

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function withDeadline<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} exceeded ${DEADLINE_MS} ms`)), DEADLINE_MS);
    }),
  ]);
}

/** Raw amqplib: one confirm channel with a window, one consumer with prefetch, ack per message. */
export async function runRaw(url: string, topology: TopologyOptions, body: Buffer): Promise<number> {
  const pubConn = await amqp.connect(url);
  const subConn = await amqp.connect(url);
  const queue = `bench.raw.${randomUUID()}`;
  try {
    const setup = await pubConn.createChannel();
    // Same queue type and arguments as a routing lane.
    const lane = laneTopology(
      { environment: 'testnet', model: 'raw', priority: 'bulk', subcloud: '_', namespaceId: queue },
      topology,
    ).queues[0]!;
    await setup.assertQueue(queue, { durable: true, arguments: lane.arguments });
    await setup.close();
    const pub = await pubConn.createConfirmChannel();
    const sub = await subConn.createChannel();
    await sub.prefetch(PREFETCH, false);
    const t0 = performance.now();
    let acked = 0;
    const consumed = new Promise<void>((resolve) => {
      void sub.consume(queue, (m) => {
        if (!m) return;
        sub.ack(m);
        acked += 1;
        if (acked === MESSAGES) resolve();
      });
    });
    let inFlight = 0;
    let waiter: (() => void) | undefined;
    const confirms: Array<Promise<void>> = [];
    for (let i = 0; i < MESSAGES; i += 1) {
      while (inFlight >= WINDOW) await new Promise<void>((r) => (waiter = r));
      inFlight += 1;
      confirms.push(
        new Promise<void>((resolve, reject) => {
          pub.publish('', queue, body, { persistent: true, expiration: '600000' }, (err) => {
            inFlight -= 1;
            waiter?.();
            waiter = undefined;
            if (err) reject(err);
            else resolve();
          });
        }),
      );
    }
    await withDeadline(Promise.all([...confirms, consumed]), 'raw run');
    const rate = MESSAGES / ((performance.now() - t0) / 1000);
    await sub.close();
    const cleanup = await pubConn.createChannel();
    await cleanup.deleteQueue(queue);
    await cleanup.close();
    return rate;
  } finally {
    await subConn.close().catch(() => undefined);
    await pubConn.close().catch(() => undefined);
  }
}

/** The routing layer: submit (validate, lane, confirm) -> lane -> fair consumer -> handler -> ack. */
async function runRouting(routing: RoutingService, round: number): Promise<number> {
  const model = `bench-model-${round}`;
  const namespaceId = randomUUID();
  let acked = 0;
  let done!: () => void;
  const consumed = new Promise<void>((resolve) => (done = resolve));
  const consumer = await routing.startConsumer({
    serves: [{ environment: 'testnet', model }],
    concurrency: PREFETCH,
    lanePrefetch: PREFETCH,
    handler: async () => ({ kind: 'done' }),
    observer: {
      acked: () => {
        acked += 1;
        if (acked === MESSAGES) done();
      },
    },
  });
  const jobs: JobMessage[] = Array.from({ length: MESSAGES }, () => makeJob({ model, namespaceId }));
  const t0 = performance.now();
  await withDeadline(Promise.all([routing.submitMany(jobs), consumed]), 'routing run');
  const rate = MESSAGES / ((performance.now() - t0) / 1000);
  await consumer.stop();
  return rate;
}

export async function main(): Promise<void> {
  const vhost = await createAmqpTestVhost();
  const db = await createPgTestSchema({ poolSize: 2 });
  const options = {
    ...routingOptionsFor(vhost.url, {
      ROUTING_PUBLISH_MAX_IN_FLIGHT: WINDOW,
      ROUTING_LANE_PREFETCH: PREFETCH,
      ROUTING_CONSUMER_CONCURRENCY: PREFETCH,
    }),
  };
  const routing = new RoutingService({ pool: db.pool, log: createLogger('silent'), options });
  try {
    await routing.start();
    const body = encodeJob(makeJob({ model: 'bench-model-0' })); // the same size as a routed job
    const raw: number[] = [];
    const ours: number[] = [];
    for (let r = 0; r < ROUNDS; r += 1) {
      raw.push(await runRaw(vhost.url, options.topology, body));
      ours.push(await runRouting(routing, r));
      console.log(
        `round ${r + 1}: routing ${round(ours[r]!, 0)} msg/s, raw amqplib ${round(raw[r]!, 0)} msg/s ` +
          `(${MESSAGES} msgs of ${body.length} B, ${options.topology.queueType ?? 'classic'} queue, window ${WINDOW}, prefetch ${PREFETCH})`,
      );
    }
    const m = median(ours);
    const rm = median(raw);
    // The machine is shared: the ratio is the median of the per-round ratios (each pair ran back to back).
    const ratio = median(ours.map((o, i) => o / raw[i]!));
    console.log(
      `median of ${ROUNDS}: routing ${round(m, 0)} msg/s vs raw ${round(rm, 0)} msg/s; median per-round ratio ${round(ratio, 2)}`,
    );
    console.log(
      benchLine('routing', {
        msgs_per_s: round(m, 0),
        raw_msgs_per_s: round(rm, 0),
        ratio: round(ratio, 2),
        queue_type: options.topology.queueType ?? 'classic',
      }),
    );
  } finally {
    await routing.stop();
    await vhost.drop(); // every queue of the run goes with the vhost
    await db.drop();
  }
}
