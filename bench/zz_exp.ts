import amqp from 'amqplib';
import { randomUUID } from 'node:crypto';
import { createAmqpTestVhost } from '../test/amqp-harness.js';
import { createPgTestSchema } from '../test/harness.js';
import { makeJob, routingOptionsFor } from '../test/routing-fixtures.js';
import { createLogger } from '../src/platform/logger.js';
import { RoutingService } from '../src/modules/routing/index.js';
import { encodeJob } from '../src/modules/routing/routing.contracts.js';
import { laneKeyOf } from '../src/modules/routing/routing.rules.js';
import { laneQueueName } from '../src/stores/rabbitmq/topology.js';
const N = 10000;
export async function main() {
  const v = await createAmqpTestVhost();
  const db = await createPgTestSchema({ poolSize: 2 });
  const routing = new RoutingService({
    pool: db.pool,
    log: createLogger('silent'),
    options: routingOptionsFor(v.url, { ROUTING_LANE_PREFETCH: 64, ROUTING_CONSUMER_CONCURRENCY: 64 }),
  });
  await routing.start();
  const c = await amqp.connect(v.url);
  try {
    const pubRaw = async (lane: string, jobs: any[], mandatory: boolean) => {
      const pub = await c.createConfirmChannel();
      const t0 = performance.now();
      let inF = 0;
      let w: (() => void) | undefined;
      const cs: Promise<void>[] = [];
      for (let i = 0; i < N; i++) {
        while (inF >= 2000) await new Promise<void>((res) => (w = res));
        inF++;
        cs.push(
          new Promise<void>((res) =>
            pub.publish(
              'rty.jobs',
              lane,
              encodeJob(jobs[i]!),
              { persistent: true, mandatory, expiration: '600000' },
              () => {
                inF--;
                w?.();
                w = undefined;
                res();
              },
            ),
          ),
        );
      }
      await Promise.all(cs);
      await pub.close();
      return Math.round(N / ((performance.now() - t0) / 1000));
    };
    for (let r = 0; r < 3; r++) {
      const ns = randomUUID();
      const model = `m${r}`;
      const jobs = Array.from({ length: N }, () => makeJob({ model, namespaceId: ns }));
      const lane = laneQueueName(laneKeyOf(jobs[0]!));
      let t0 = performance.now();
      let cpu = process.cpuUsage();
      await routing.submitMany(jobs);
      const ours = Math.round(N / ((performance.now() - t0) / 1000));
      const cpuOurs = process.cpuUsage(cpu);
      cpu = process.cpuUsage();
      const rawM = await pubRaw(lane, jobs, true);
      const cpuRaw = process.cpuUsage(cpu);
      const rawP = await pubRaw(lane, jobs, false);
      const us = (c: NodeJS.CpuUsage) => ((c.user + c.system) / N).toFixed(1);
      console.log(
        `publish: ours ${ours} (${us(cpuOurs)} us cpu/msg) raw-mandatory ${rawM} (${us(cpuRaw)} us cpu/msg) raw-plain ${rawP}`,
      );
      // lane now has 3N. consume raw N exactly (cancel at N, nack extras back)
      const sub = await c.createChannel();
      await sub.prefetch(64, false);
      t0 = performance.now();
      let n = 0;
      await new Promise<void>(
        (res) =>
          void sub.consume(lane, (m) => {
            if (!m) return;
            if (n >= N) {
              sub.nack(m, false, true);
              return;
            }
            sub.ack(m);
            if (++n === N) res();
          }),
      );
      const cr = Math.round(N / ((performance.now() - t0) / 1000));
      await sub.close();
      let k = 0;
      let done!: () => void;
      const p = new Promise<void>((res) => (done = res));
      t0 = performance.now();
      const consumer = await routing.startConsumer({
        serves: [{ environment: 'testnet', model }],
        handler: async () => ({ kind: 'done' }),
        observer: {
          acked: () => {
            if (++k === N) done();
          },
        },
      });
      await p;
      const co = Math.round(N / ((performance.now() - t0) / 1000));
      await consumer.stop();
      console.log(`consume: raw ${cr} ours ${co}`);
    }
  } finally {
    await c.close();
    await routing.stop();
    await v.drop();
    await db.drop();
  }
}
