// Deployment isolation of the routing layer on one RabbitMQ vhost: two routing services of different
// DEPLOYMENT (own PostgreSQL schemas) submit jobs of the same lane key; each consumer runs only its own
// deployment's jobs (first attempt and retry), each deployment's lifecycle events reach only its own
// recorder queue, and nothing is declared under the unprefixed names.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAmqpTestVhost, type AmqpTestVhost } from '../../../test/amqp-harness.js';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { makeJob, routingOptionsFor, waitFor } from '../../../test/routing-fixtures.js';
import { connectAmqp, type AmqpConnection } from '../../stores/rabbitmq/connection.js';
import { EXCHANGES, QUEUES, retryTierName } from '../../stores/rabbitmq/topology.js';
import { decodeEvent, RoutingService } from './index.js';

let vhost: AmqpTestVhost;
let raw: AmqpConnection;
const schemas: PgTestSchema[] = [];
const services: RoutingService[] = [];

beforeAll(async () => {
  vhost = await createAmqpTestVhost();
  raw = await connectAmqp(vhost.url, 'test-raw');
});
afterAll(async () => {
  for (const s of services) await s.stop();
  await raw?.close().catch(() => undefined);
  await Promise.allSettled([vhost?.drop(), ...schemas.map((s) => s.drop())]);
});

async function deployment(name: string) {
  const db = await createPgTestSchema({ poolSize: 4 });
  schemas.push(db);
  const routing = new RoutingService({
    pool: db.pool,
    log: testLog,
    options: routingOptionsFor(
      vhost.url,
      { DEPLOYMENT: name, ROUTING_RETRY_DELAYS_MS: '200', ROUTING_MAX_ATTEMPTS: 3 },
      name,
    ),
  });
  services.push(routing);
  await routing.start();
  const ran: string[] = [];
  const failedOnce = new Set<string>();
  await routing.startConsumer({
    serves: [{ environment: 'testnet', model: 'llama-3-8b' }],
    // Every job fails its first attempt, so the retry tier (and its dead-letter back to the lane) is used.
    handler: async (job) => {
      ran.push(job.jobId);
      if (!failedOnce.has(job.jobId)) {
        failedOnce.add(job.jobId);
        return { kind: 'failed', reason: 'first attempt' };
      }
      return { kind: 'done' };
    },
  });
  return { routing, ran };
}

async function takeEvents(queue: string): Promise<Array<{ jobId: string; type: string }>> {
  const ch = await raw.createChannel();
  try {
    const out: Array<{ jobId: string; type: string }> = [];
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (!m) return out;
      const e = decodeEvent(m.content);
      if (e) out.push({ jobId: e.jobId, type: e.type });
    }
  } finally {
    await ch.close();
  }
}

describe('routing: deployments on one vhost', () => {
  it('two deployments with jobs of the same lane key each run and record only their own', async () => {
    const alpha = await deployment('alpha');
    const beta = await deployment('beta');
    // Same namespace, model, environment and priority: the same lane key in both deployments.
    const namespaceId = randomUUID();
    const a = Array.from({ length: 10 }, () => makeJob({ namespaceId }));
    const b = Array.from({ length: 10 }, () => makeJob({ namespaceId }));
    await Promise.all([alpha.routing.submitMany(a), beta.routing.submitMany(b)]);
    const done = (ran: string[]) => new Set(ran).size === 10 && ran.length === 20;
    await waitFor('alpha ran its jobs twice', () => done(alpha.ran));
    await waitFor('beta ran its jobs twice', () => done(beta.ran));
    expect([...new Set(alpha.ran)].sort()).toEqual(a.map((j) => j.jobId).sort());
    expect([...new Set(beta.ran)].sort()).toEqual(b.map((j) => j.jobId).sort());

    // Lanes, retry tiers and events are the deployment's own.
    const health = await alpha.routing.health();
    const names = health.queues.map((q) => q.queue);
    expect(names).toContain(retryTierName(200, 'alpha'));
    expect(names.some((n) => n.startsWith('alpha.rty.lane.testnet.'))).toBe(true);
    expect(names.every((n) => n.startsWith('alpha.'))).toBe(true);
    const ea = await takeEvents('alpha.rty.events.recorder');
    const eb = await takeEvents('beta.rty.events.recorder');
    const ids = (e: Array<{ jobId: string }>) => [...new Set(e.map((x) => x.jobId))].sort();
    expect(ids(ea)).toEqual(a.map((j) => j.jobId).sort());
    expect(ids(eb)).toEqual(b.map((j) => j.jobId).sort());
    expect(ea.some((e) => e.type === 'retry_scheduled')).toBe(true);

    // Nothing exists under the default deployment's names.
    const ch = await raw.createChannel();
    ch.on('error', () => undefined);
    await expect(ch.checkExchange(EXCHANGES.jobs)).rejects.toThrow(/NOT_FOUND/);
    const ch2 = await raw.createChannel();
    ch2.on('error', () => undefined);
    await expect(ch2.checkQueue(QUEUES.expired)).rejects.toThrow(/NOT_FOUND/);
  });
});
