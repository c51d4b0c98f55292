// Consuming side of routing: finds the lanes of its routing classes (registry + announcements), buffers their
// deliveries with a prefetch per lane, starts them in fair order, and acks only after the handler — which
// commits the outcome — has returned. Failures go to a retry tier or quarantine; expired jobs to onExpired.
import type { Channel } from 'amqplib';
import type { Logger } from '../../platform/logger.js';
import type { Pool } from '../../stores/postgres/pool.js';
import { QueueConsumer, type Delivery } from '../../stores/rabbitmq/consumer.js';
import type { ManagedConnection } from '../../stores/rabbitmq/reconnect.js';
import {
  assertTopology,
  laneQueueName,
  laneTopology,
  staticTopology,
  topologyNames,
  type LaneKey,
  type TopologyNames,
  type TopologyOptions,
} from '../../stores/rabbitmq/topology.js';
import { FairScheduler, type ClassWeights } from './fair-scheduler.js';
import type { QueueCounters } from './health.js';
import { LanesRepository, type LaneFilter } from './lanes.repository.js';
import { isPriorityClass, type PriorityClass } from '../../config/vocabulary.js';
import { decodeJob, type AttemptCause, type JobMessage } from './routing.contracts.js';
import type { JobPublisher, LaneAnnouncement } from './routing.publisher.js';
import { decideFailure, isExpired, type RetryPolicy } from './routing.rules.js';

/**
 * What the handler reports. It must resolve only after the job's outcome is committed (e.g. PostgreSQL),
 * and be idempotent by job id: a job can be delivered again (lost ack, republished publish, requeue).
 */
export type JobOutcome =
  | { kind: 'done' }
  | { kind: 'failed'; reason: string; nodeId?: string; cause?: AttemptCause }
  /** The process is stopping before the job reached any node: the same delivery goes back to the broker
   * (requeued, no attempt spent) for another process. */
  | { kind: 'handback' };

export type JobHandler = (
  job: JobMessage,
  ctx: { redelivered: boolean; queue: string },
) => Promise<JobOutcome>;

/** Commits the consequences of an expired job (refund, terminal state), idempotently by job id; resolves
 * after the commit. */
export type ExpiredHandler = (job: JobMessage) => Promise<void>;

/** Test and metrics hooks, called synchronously. */
export interface ConsumerObserver {
  /** In the local buffer (delivered by the broker, not started). */
  buffered?(job: JobMessage, queue: string): void;
  started?(job: JobMessage, queue: string): void;
  acked?(job: JobMessage): void;
}

export interface JobConsumerOptions {
  /** Routing classes served (every priority class of each). */
  serves: LaneFilter[];
  concurrency: number;
  lanePrefetch: number;
  weights: ClassWeights;
  pollMs: number;
  policy: RetryPolicy;
  topology: TopologyOptions;
  /** A lane not published to for this long and empty is no longer consumed (the broker then expires it). */
  laneIdleMs: number;
}

const REQUEUE_PAUSE_MS = 1000;

interface Buffered {
  delivery: Delivery;
  job: JobMessage;
}

export class JobConsumer {
  private readonly consumer: QueueConsumer;
  private readonly scheduler: FairScheduler<Buffered>;
  private readonly lanes: LanesRepository;
  /** This deployment's names (config DEPLOYMENT, carried in the topology options). */
  private readonly names: TopologyNames;
  private readonly laneKeys = new Map<string, LaneKey>();
  private readonly lastDelivery = new Map<string, number>();
  private running = 0;
  private stopped = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];
  private readonly log: Logger;

  constructor(
    private readonly deps: {
      connection: ManagedConnection;
      pool: Pool;
      publisher: JobPublisher;
      log: Logger;
      counters: QueueCounters;
      handler: JobHandler;
      onExpired?: ExpiredHandler;
      observer?: ConsumerObserver;
      options: JobConsumerOptions;
    },
  ) {
    this.log = deps.log.child({ component: 'job-consumer' });
    this.names = topologyNames(deps.options.topology.deployment, deps.options.topology.queueType);
    this.lanes = new LanesRepository(this.names.deployment);
    this.scheduler = new FairScheduler(deps.options.weights);
    this.consumer = new QueueConsumer({
      connection: deps.connection,
      log: deps.log,
      prefetchPerQueue: deps.options.lanePrefetch,
      setup: (ch) => assertTopology(ch, staticTopology(deps.options.topology)),
      onDelivery: (d) => this.onDelivery(d),
      // Buffered deliveries of a lost channel are redelivered by the broker: drop our copies.
      onChannelLost: () => void this.scheduler.drain(),
    });
  }

  get inFlight(): number {
    return this.running;
  }

  get buffered(): number {
    return this.scheduler.size;
  }

  async start(): Promise<void> {
    await this.consumer.start();
    await this.deps.connection.addHook('lane-announcements', (conn) =>
      conn.createChannel().then(async (ch) => {
        ch.on('error', () => undefined);
        const q = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
        await ch.bindQueue(q.queue, this.names.exchanges.lanes, '');
        await ch.consume(q.queue, (m) => m && this.onAnnouncement(m.content), { noAck: true });
      }),
    );
    if (this.deps.onExpired) await this.consumer.addQueue(this.names.queues.expired, async () => undefined);
    await this.pollLanes();
    this.schedulePoll();
  }

  /** Stops taking deliveries, waits for running jobs to finish and ack, then closes the channel. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.pollTimer);
    await this.consumer.cancelAll();
    this.scheduler.drain(); // not started: requeued by the broker when the channel closes
    if (this.running > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.consumer.stop();
  }

  /** Re-reads the lane registry: attaches new lanes, lets idle empty ones go. */
  async pollLanes(): Promise<void> {
    const rows = await this.lanes.findLanes(this.deps.pool, this.deps.options.serves);
    const idleBefore = Date.now() - this.deps.options.laneIdleMs;
    for (const row of rows) {
      const idle =
        row.lastPublishedAt.getTime() < idleBefore &&
        (this.lastDelivery.get(row.queueName) ?? 0) < idleBefore;
      if (!idle) await this.addLane(row);
      else if (this.laneKeys.has(row.queueName)) await this.releaseIfEmpty(row.queueName);
    }
  }

  private schedulePoll(): void {
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => {
      this.pollLanes()
        .catch((err: unknown) => this.log.warn({ err }, 'lane poll failed'))
        .finally(() => this.schedulePoll());
    }, this.deps.options.pollMs);
  }

  private serves(key: LaneKey): boolean {
    return this.deps.options.serves.some(
      (f) =>
        f.environment === key.environment &&
        (f.model === '*' || f.model === key.model) &&
        (f.subcloud === '*' || f.subcloud === key.subcloud),
    );
  }

  private onAnnouncement(body: Buffer): void {
    let a: LaneAnnouncement;
    try {
      a = JSON.parse(body.toString('utf8')) as LaneAnnouncement;
    } catch {
      return;
    }
    if (!a?.key || typeof a.queue !== 'string' || !this.serves(a.key)) return;
    if (laneQueueName(a.key, this.names.deployment) !== a.queue) return;
    void this.addLane(a.key).catch((err: unknown) => this.log.warn({ err }, 'attach lane failed'));
  }

  private async addLane(key: LaneKey): Promise<void> {
    if (this.stopped || !isPriorityClass(key.priority)) return;
    const queue = laneQueueName(key, this.names.deployment);
    if (this.laneKeys.has(queue)) return;
    this.laneKeys.set(queue, { ...key });
    this.lastDelivery.set(queue, Date.now());
    // Declaring before consuming: a lane expired by the broker is recreated instead of failing with 404.
    await this.consumer.addQueue(queue, (ch: Channel) =>
      assertTopology(ch, laneTopology(key, this.deps.options.topology)),
    );
  }

  private async releaseIfEmpty(queue: string): Promise<void> {
    const conn = this.deps.connection.connection;
    if (!conn) return;
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    try {
      const q = await ch.checkQueue(queue);
      if (q.messageCount > 0) return;
      await this.consumer.removeQueue(queue);
      this.laneKeys.delete(queue);
      this.log.debug({ queue }, 'released idle lane');
    } catch {
      // Already gone: nothing to consume.
      await this.consumer.removeQueue(queue);
      this.laneKeys.delete(queue);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  private onDelivery(d: Delivery): void {
    if (d.queue === this.names.queues.expired) {
      void this.onDeadLettered(d);
      return;
    }
    const job = decodeJob(d.message.content);
    if (!job) {
      // Breaks the contract: dead-letter it (to the expiry path, which quarantines it with the raw body).
      this.log.warn({ queue: d.queue }, 'undecodable job message');
      d.nack(false);
      return;
    }
    this.deps.counters.add(d.queue, 'delivered');
    if (d.message.fields.redelivered) this.deps.counters.add(d.queue, 'redelivered');
    this.lastDelivery.set(d.queue, Date.now());
    const key = this.laneKeys.get(d.queue);
    const priority: PriorityClass = (key?.priority as PriorityClass | undefined) ?? job.priority;
    this.scheduler.push(priority, d.queue, { delivery: d, job });
    this.deps.observer?.buffered?.(job, d.queue);
    this.pump();
  }

  private pump(): void {
    while (this.running < this.deps.options.concurrency && this.scheduler.size > 0 && !this.stopped) {
      const item = this.scheduler.next()!;
      if (!item.delivery.isLive()) continue; // its channel is gone; the broker redelivers it
      this.running += 1;
      void this.run(item).finally(() => {
        this.running -= 1;
        if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w();
        this.pump();
      });
    }
  }

  private async run({ delivery, job }: Buffered): Promise<void> {
    const now = new Date();
    try {
      if (isExpired(job, now)) {
        if (!this.deps.onExpired) {
          // No expiry handler here: dead-letter it to the expiry path, where one is.
          delivery.nack(false);
          return;
        }
        await this.expire(job, 'ttl', delivery.queue);
        this.ack(delivery, job);
        return;
      }
      this.deps.observer?.started?.(job, delivery.queue);
      let outcome: JobOutcome;
      try {
        outcome = await this.deps.handler(job, {
          redelivered: delivery.message.fields.redelivered,
          queue: delivery.queue,
        });
      } catch (err) {
        // Nothing was committed: the job runs again after a backoff (our attempt counter still counts it).
        outcome = {
          kind: 'failed',
          reason: `handler error: ${err instanceof Error ? err.message : String(err)}`,
        };
      }
      if (outcome.kind === 'handback') {
        delivery.nack(true);
        return;
      }
      if (outcome.kind === 'failed') await this.fail(job, outcome, delivery.queue);
      this.ack(delivery, job);
    } catch (err) {
      // Publishing the retry/quarantine copy (or the expiry commit) failed: requeue it, so nothing is lost;
      // the handler sees it again and its committed outcome makes the repeat a no-op (dedup by job id).
      this.log.error({ err, jobId: job.jobId }, 'job routing step failed; requeued');
      await new Promise((resolve) => setTimeout(resolve, REQUEUE_PAUSE_MS)); // no hot loop while a store is down
      delivery.nack(true);
    }
  }

  private ack(delivery: Delivery, job: JobMessage): void {
    if (delivery.ack()) {
      this.deps.counters.add(delivery.queue, 'acked');
      this.deps.observer?.acked?.(job);
    }
  }

  private async fail(
    job: JobMessage,
    f: { reason: string; nodeId?: string; cause?: AttemptCause },
    queue: string,
  ): Promise<void> {
    const decision = decideFailure(job, f, this.deps.options.policy, new Date());
    const info = { reason: f.reason, ...(f.nodeId ? { nodeId: f.nodeId } : {}) };
    if (decision.kind === 'retry') {
      await this.deps.publisher.publishRetry(decision.next, decision.delayMs);
      this.deps.counters.add(queue, 'retried');
      await this.deps.publisher.publishEvent('retry_scheduled', decision.next, info);
    } else {
      await this.deps.publisher.publishQuarantine(decision.next, f.reason, queue);
      this.deps.counters.add(queue, 'quarantined');
      await this.deps.publisher.publishEvent('quarantined', decision.next, info);
    }
  }

  private async expire(job: JobMessage, reason: string, queue: string): Promise<void> {
    await this.deps.onExpired!(job);
    this.deps.counters.add(queue, 'expired');
    await this.deps.publisher.publishEvent('expired', job, { reason });
  }

  /** From the expiry queue: TTL-expired jobs are reported; anything else dead-lettered is quarantined raw. */
  private async onDeadLettered(d: Delivery): Promise<void> {
    const deaths = d.message.properties.headers?.['x-death'] as
      | Array<{ reason?: string; queue?: string }>
      | undefined;
    const reason = deaths?.[0]?.reason ?? 'unknown';
    const job = decodeJob(d.message.content);
    try {
      const from = deaths?.[0]?.queue ?? 'unknown';
      if (job && reason === 'expired') await this.expire(job, 'ttl', from);
      else if (job && isExpired(job, new Date())) await this.expire(job, `ttl (${reason})`, from);
      else
        await this.deps.publisher.publishQuarantine(
          d.message.content,
          job ? `dead-lettered: ${reason}` : 'invalid contract',
          from,
        );
      if (d.ack() && job) this.deps.observer?.acked?.(job);
    } catch (err) {
      this.log.error({ err }, 'expiry handling failed; leaving unacked');
    }
  }
}
