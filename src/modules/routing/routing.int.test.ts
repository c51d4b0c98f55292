// Routing against the real RabbitMQ and PostgreSQL: ack after commit, redelivery after a consumer dies,
// retry with backoff into quarantine, replay and purge, the expiry path, contract violations, health.
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createAmqpTestVhost, type AmqpTestVhost } from '../../../test/amqp-harness.js';
import {
  commitOutcome,
  countOutcomes,
  createOutcomeTable,
  gate,
  makeJob,
  routingOptionsFor,
  waitFor,
} from '../../../test/routing-fixtures.js';
import { connectAmqp, type AmqpConnection } from '../../stores/rabbitmq/connection.js';
import { EXCHANGES, QUEUES, laneQueueName } from '../../stores/rabbitmq/topology.js';
import { decodeEvent, RoutingService, type JobEvent, type JobMessage } from './index.js';
import { laneKeyOf } from './routing.rules.js';

let db: PgTestSchema;
let vhost: AmqpTestVhost;
let raw: AmqpConnection;
let routing: RoutingService;

beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 8 });
  await createOutcomeTable(db.pool);
  vhost = await createAmqpTestVhost();
  raw = await connectAmqp(vhost.url, 'test-raw');
  routing = new RoutingService({
    pool: db.pool,
    log: testLog,
    options: {
      ...routingOptionsFor(vhost.url, { ROUTING_RETRY_DELAYS_MS: '200,400', ROUTING_MAX_ATTEMPTS: 3 }),
      // Slow consumer reconnects leave a window to look at the broker after a server-side close.
      reconnectDelayMs: 3000,
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

async function readyCount(queue: string): Promise<number> {
  const ch = await raw.createChannel();
  try {
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await ch.close();
  }
}

/** Takes every event currently in the recorder queue. */
async function takeEvents(): Promise<JobEvent[]> {
  const ch = await raw.createChannel();
  const out: JobEvent[] = [];
  try {
    for (;;) {
      const m = await ch.get(QUEUES.recorderEvents, { noAck: true });
      if (!m) break;
      const e = decodeEvent(m.content);
      if (!e) throw new Error('an event broke its contract');
      out.push(e);
    }
  } finally {
    await ch.close();
  }
  return out;
}

describe('topology', () => {
  it('is asserted idempotently: a second service in the same vhost starts against it', async () => {
    const again = new RoutingService({ pool: db.pool, log: testLog, options: routingOptionsFor(vhost.url) });
    await again.start();
    await again.stop();
    expect(await readyCount(QUEUES.quarantine)).toBe(0);
    expect(await readyCount('rty.retry.200ms')).toBe(0);
  });
});

describe('ack after commit', () => {
  it('never acks before the outcome commit; a consumer killed mid-commit gets the job again, once', async () => {
    const model = 'ack-model';
    const job = makeJob({ model });
    const lane = laneQueueName(laneKeyOf(job));
    const inCommit = gate();
    const release = gate();
    const calls: Array<{ redelivered: boolean; first: boolean }> = [];
    const committedAt = new Map<string, number>();
    const ackedAt: number[] = [];
    const consumer = await routing.startConsumer({
      name: 'test-ack-consumer',
      serves: [{ environment: 'testnet', model }],
      observer: { acked: () => ackedAt.push(performance.now()) },
      handler: async (j, ctx) => {
        const n = calls.length;
        const first = await commitOutcome(db.pool, j.jobId, async () => {
          if (n === 0) {
            inCommit.open();
            await release.promise;
          }
        });
        committedAt.set(`${n}`, performance.now());
        calls.push({ redelivered: ctx.redelivered, first });
        return { kind: 'done' };
      },
    });
    onTestFinished(() => release.open()); // never leave the handler blocked
    await routing.submit(job);
    await inCommit.promise;
    // Delivered, written, not committed: the message is unacked (not ready) ...
    expect(await readyCount(lane)).toBe(0);
    // ... and when the consumer's connection dies now, the broker has it back: no ack was sent.
    expect(await vhost.closeConnections('test-ack-consumer')).toBe(1);
    await waitFor('the job is ready again', async () => (await readyCount(lane)) === 1, 2500);
    release.open();
    await waitFor('the job is redelivered and acked', () => ackedAt.length === 1);
    expect(calls).toHaveLength(2);
    expect(calls.filter((c) => c.first)).toHaveLength(1); // committed exactly once (dedup by job id)
    expect(calls.some((c) => c.redelivered)).toBe(true);
    // The one ack that went out followed a completed commit.
    expect(ackedAt[0]!).toBeGreaterThanOrEqual(Math.min(...committedAt.values()));
    expect(await countOutcomes(db.pool)).toBe(1);
    await consumer.stop();
    expect(await readyCount(lane)).toBe(0);
  });

  it('a handler that fails before its commit gets the job again (after the first backoff)', async () => {
    const model = 'fail-once-model';
    const job = makeJob({ model });
    const seen: JobMessage[] = [];
    const consumer = await routing.startConsumer({
      serves: [{ environment: 'testnet', model }],
      handler: async (j) => {
        seen.push(j);
        if (seen.length === 1) throw new Error('PostgreSQL went away before commit');
        await commitOutcome(db.pool, j.jobId);
        return { kind: 'done' };
      },
    });
    await routing.submit(job);
    await waitFor('second attempt', () => seen.length === 2);
    expect(seen.map((j) => j.attempt)).toEqual([0, 1]);
    expect(seen[1]!.failures[0]!.reason).toContain('went away');
    await consumer.stop();
  });
});

describe('retry, quarantine, replay, purge', () => {
  it('retries with increasing backoff on other nodes, then quarantines with an event, then replays', async () => {
    const model = 'flaky-model';
    const job = makeJob({ model, priority: 'urgent' });
    const calls: Array<{ job: JobMessage; at: number }> = [];
    let healthy = false;
    await takeEvents();
    const consumer = await routing.startConsumer({
      serves: [{ environment: 'testnet', model }],
      handler: async (j) => {
        calls.push({ job: j, at: performance.now() });
        if (!healthy)
          return { kind: 'failed', reason: `timeout on node-${j.attempt}`, nodeId: `node-${j.attempt}` };
        await commitOutcome(db.pool, j.jobId);
        return { kind: 'done' };
      },
    });
    await routing.submit(job);
    await waitFor('quarantined', async () => (await readyCount(QUEUES.quarantine)) === 1);
    expect(calls.map((c) => c.job.attempt)).toEqual([0, 1, 2]);
    expect(calls[2]!.job.excludedNodeIds).toEqual(['node-0', 'node-1']);
    // Backoff through the delay tiers: never sooner than the tier's TTL.
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(195);
    expect(calls[2]!.at - calls[1]!.at).toBeGreaterThanOrEqual(395);

    const listed = await routing.listQuarantine(10);
    expect(listed).toHaveLength(1);
    expect(listed[0]!.job!.jobId).toBe(job.jobId);
    expect(listed[0]!.job!.failures.map((f) => f.nodeId)).toEqual(['node-0', 'node-1', 'node-2']);
    expect(listed[0]!.reason).toBe('timeout on node-2');
    expect(await readyCount(QUEUES.quarantine)).toBe(1); // listing does not remove

    const events = await takeEvents();
    expect(events.map((e) => e.type)).toEqual(['retry_scheduled', 'retry_scheduled', 'quarantined']);
    expect(events.every((e) => e.jobId === job.jobId)).toBe(true);

    healthy = true;
    expect(await routing.replayQuarantine({ jobIds: [job.jobId], limit: 10 })).toBe(1);
    await waitFor('replayed job done', () => calls.length === 4);
    expect(calls[3]!.job.attempt).toBe(0);
    expect(calls[3]!.job.failures).toHaveLength(3); // history travels with it
    expect(await readyCount(QUEUES.quarantine)).toBe(0);
    expect((await takeEvents()).map((e) => e.type)).toEqual(['replayed']);
    await consumer.stop();
  });

  it('purges selected jobs and keeps the rest', async () => {
    const model = 'doomed-model';
    const jobs = [makeJob({ model }), makeJob({ model })];
    const consumer = await routing.startConsumer({
      serves: [{ environment: 'testnet', model }],
      handler: async () => ({ kind: 'failed', reason: 'always' }),
    });
    const before = await readyCount(QUEUES.quarantine);
    await routing.submitMany(jobs);
    await waitFor('both quarantined', async () => (await readyCount(QUEUES.quarantine)) === before + 2);
    await consumer.stop();
    expect(await routing.purgeQuarantine({ jobIds: [jobs[0]!.jobId], limit: 100 })).toBe(1);
    const left = await routing.listQuarantine(100);
    expect(left.map((q) => q.job?.jobId)).toContain(jobs[1]!.jobId);
    expect(left.map((q) => q.job?.jobId)).not.toContain(jobs[0]!.jobId);
    expect(await routing.purgeQuarantine({ limit: 100 })).toBe(left.length);
    expect(await readyCount(QUEUES.quarantine)).toBe(0);
  });
});

describe('expiry', () => {
  it('a job whose TTL passes in its lane is dead-lettered to the expiry consumer, which commits and reports', async () => {
    await takeEvents();
    const expired: JobMessage[] = [];
    // Serves another model: nobody consumes the expiring job's lane.
    const consumer = await routing.startConsumer({
      serves: [{ environment: 'mainnet', model: 'other' }],
      handler: async () => ({ kind: 'done' }),
      onExpired: async (j) => {
        await commitOutcome(db.pool, j.jobId);
        expired.push(j);
      },
    });
    const job = makeJob({ model: 'unserved-model', environment: 'mainnet', ttlMs: 300 });
    await routing.submit(job);
    await waitFor('expired', () => expired.length === 1);
    expect(expired[0]!.jobId).toBe(job.jobId);
    await waitFor('expired event', async () => (await readyCount(QUEUES.recorderEvents)) > 0);
    const events = await takeEvents();
    expect(events.map((e) => [e.type, e.jobId])).toEqual([['expired', job.jobId]]);
    expect(await readyCount(laneQueueName(laneKeyOf(job)))).toBe(0);
    await consumer.stop();
  });

  it('a message that breaks the contract is dead-lettered and quarantined raw', async () => {
    const model = 'contract-model';
    const consumer = await routing.startConsumer({
      serves: [{ environment: 'testnet', model }],
      handler: async () => ({ kind: 'done' }),
      onExpired: async () => undefined,
    });
    const valid = makeJob({ model });
    const lane = laneQueueName(laneKeyOf(valid));
    await routing.submit(valid); // declares the lane
    const ch = await raw.createConfirmChannel();
    ch.publish(EXCHANGES.jobs, lane, Buffer.from('{"v":99,"jobId":"nope"}'), { persistent: true });
    await ch.waitForConfirms();
    await ch.close();
    await waitFor('quarantined', async () => (await readyCount(QUEUES.quarantine)) === 1);
    const [q] = await routing.listQuarantine(10);
    expect(q!.job).toBeUndefined();
    expect(q!.reason).toBe('invalid contract');
    expect(await routing.purgeQuarantine({ limit: 10 })).toBe(1);
    await consumer.stop();
  });
});

describe('health', () => {
  it('reports depths per queue, the quarantine size, counters and per-queue rates', async () => {
    const job = makeJob({ model: 'idle-model' });
    const lane = laneQueueName(laneKeyOf(job));
    await routing.submit(job);
    await routing.health(); // first reading of this lane's meter
    await routing.submitMany([
      makeJob({ ...job, jobId: makeJob().jobId }),
      makeJob({ ...job, jobId: makeJob().jobId }),
    ]);
    const h = await routing.health();
    expect(h.queueType).toBe('classic');
    const row = h.queues.find((q) => q.queue === lane);
    expect(row).toMatchObject({ messages: 3, consumers: 0 });
    expect(row!.ratesPerS.published).toBeGreaterThan(0);
    expect(row!.ratesPerS.delivered).toBe(0);
    expect(h.quarantineSize).toBe(0);
    expect(h.rates.counters.published).toBeGreaterThan(0);
    expect(h.rates.counters.acked).toBeGreaterThan(0);
    expect(h.rates.counters.redelivered).toBeGreaterThan(0); // the ack test's redelivery
    expect(h.publisher.inFlight).toBe(0);
  });
});
