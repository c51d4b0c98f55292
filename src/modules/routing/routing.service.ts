// The routing facade: one publishing connection, consumers on connections of their own, quarantine
// operations and queue health. start()/stop() own every connection it opens.
import type { Config } from '../../config/config.js';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { Pool } from '../../stores/postgres/pool.js';
import { ManagedConnection } from '../../stores/rabbitmq/reconnect.js';
import {
  retryTierName,
  topologyNames,
  type QueueType,
  type TopologyNames,
  type TopologyOptions,
} from '../../stores/rabbitmq/topology.js';
import type { ClassWeights } from './fair-scheduler.js';
import {
  deleteQueueIfIdle,
  RateMeter,
  readQueueDepths,
  QueueCounters,
  type Counters,
  type QueueDepth,
  type RateReading,
} from './health.js';
import { LanesRepository, type LaneFilter } from './lanes.repository.js';
import {
  listQuarantine,
  purgeQuarantine,
  replayQuarantine,
  type QuarantinedJob,
  type Selection,
} from './quarantine.js';
import type { JobEventType, JobMessage } from './routing.contracts.js';
import {
  JobConsumer,
  type ConsumerObserver,
  type ExpiredHandler,
  type JobHandler,
} from './routing.consumer.js';
import { JobPublisher, LANE_REFRESH_MS } from './routing.publisher.js';
import { parseRetryDelays, type RetryPolicy } from './routing.rules.js';

export interface RoutingOptions {
  amqpUrl: string;
  /** connection_name prefix (visible in `rabbitmqctl list_connections client_properties`). */
  connectionName: string;
  publishMaxInFlight: number;
  concurrency: number;
  lanePrefetch: number;
  weights: ClassWeights;
  policy: RetryPolicy;
  topology: TopologyOptions;
  jobTtlMaxMs: number;
  lanePollMs: number;
  laneIdleMs: number;
  reconnectDelayMs: number;
}

export function routingOptionsFromConfig(config: Config, connectionName = 'rty'): RoutingOptions {
  const retryDelaysMs = parseRetryDelays(config.ROUTING_RETRY_DELAYS_MS);
  if (config.ROUTING_JOB_MAX_RUNTIME_MS >= config.ROUTING_BROKER_CONSUMER_TIMEOUT_MS)
    throw new Error(
      'ROUTING_JOB_MAX_RUNTIME_MS must stay below ROUTING_BROKER_CONSUMER_TIMEOUT_MS (the broker would close the channel of a long job)',
    );
  if (config.ROUTING_LANE_IDLE_MS <= 2 * LANE_REFRESH_MS)
    throw new Error(
      `ROUTING_LANE_IDLE_MS must exceed ${2 * LANE_REFRESH_MS} ms (publishers refresh a used lane's registry row every ${LANE_REFRESH_MS} ms)`,
    );
  if (config.ROUTING_LANE_EXPIRES_MS <= config.ROUTING_JOB_TTL_MAX_MS)
    throw new Error(
      'ROUTING_LANE_EXPIRES_MS must exceed ROUTING_JOB_TTL_MAX_MS (an idle lane may hold jobs)',
    );
  return {
    amqpUrl: config.AMQP_URL,
    connectionName,
    publishMaxInFlight: config.ROUTING_PUBLISH_MAX_IN_FLIGHT,
    concurrency: config.ROUTING_CONSUMER_CONCURRENCY,
    lanePrefetch: config.ROUTING_LANE_PREFETCH,
    weights: {
      urgent: config.ROUTING_WEIGHT_URGENT,
      bulk: config.ROUTING_WEIGHT_BULK,
      test: config.ROUTING_WEIGHT_TEST,
    },
    policy: { maxAttempts: config.ROUTING_MAX_ATTEMPTS, retryDelaysMs },
    topology: {
      retryDelaysMs,
      jobTtlMaxMs: config.ROUTING_JOB_TTL_MAX_MS,
      laneExpiresMs: config.ROUTING_LANE_EXPIRES_MS,
      deployment: config.DEPLOYMENT,
      queueType: config.AMQP_QUEUE_TYPE,
    },
    jobTtlMaxMs: config.ROUTING_JOB_TTL_MAX_MS,
    lanePollMs: config.ROUTING_LANE_POLL_MS,
    laneIdleMs: config.ROUTING_LANE_IDLE_MS,
    reconnectDelayMs: config.ROUTING_RECONNECT_DELAY_MS,
  };
}

export interface ConsumerSpec {
  serves: Array<{ environment: string; model: string; subcloud?: string | null }>;
  handler: JobHandler;
  onExpired?: ExpiredHandler;
  observer?: ConsumerObserver;
  /** Overrides of the service options for this consumer. */
  concurrency?: number;
  lanePrefetch?: number;
  weights?: ClassWeights;
  name?: string;
}

export interface QueueHealth extends QueueDepth {
  /** This process's counters for the queue, per second since the previous health() call. */
  ratesPerS: Counters;
}

export interface RoutingHealth {
  queueType: QueueType;
  /** This process's counters and rates, all queues together. */
  rates: RateReading;
  publisher: JobPublisher['stats'];
  queues: QueueHealth[];
  quarantineSize: number | undefined;
}

export class RoutingService {
  readonly counters = new QueueCounters();
  readonly connection: ManagedConnection;
  readonly publisher: JobPublisher;
  private readonly consumers: Array<{ consumer: JobConsumer; connection: ManagedConnection }> = [];
  private readonly meter = new RateMeter();
  private readonly queueMeters = new Map<string, RateMeter>();
  private readonly lanes: LanesRepository;
  /** This deployment's exchange and queue names (config DEPLOYMENT). */
  readonly names: TopologyNames;
  private stopping: Promise<void> | undefined;
  private consumerSeq = 0;

  constructor(private readonly deps: { pool: Pool; log: Logger; options: RoutingOptions }) {
    const o = deps.options;
    this.names = topologyNames(o.topology.deployment, o.topology.queueType);
    this.lanes = new LanesRepository(this.names.deployment);
    this.connection = this.newConnection(`${o.connectionName}-publisher`);
    this.publisher = new JobPublisher({
      connection: this.connection,
      pool: deps.pool,
      log: deps.log,
      counters: this.counters,
      topology: o.topology,
      maxInFlight: o.publishMaxInFlight,
      jobTtlMaxMs: o.jobTtlMaxMs,
    });
  }

  /** Connects and asserts the topology (idempotent). */
  async start(): Promise<void> {
    await this.publisher.start();
    await this.connection.start();
  }

  submit(job: JobMessage): Promise<void> {
    return this.publisher.submit(job);
  }

  submitMany(jobs: JobMessage[]): Promise<void> {
    return this.publisher.submitMany(jobs);
  }

  publishEvent(
    type: JobEventType,
    job: Pick<JobMessage, 'jobId' | 'namespaceId' | 'model' | 'environment' | 'attempt'>,
    extra?: { reason?: string; nodeId?: string },
  ): Promise<void> {
    return this.publisher.publishEvent(type, job, extra);
  }

  /** A started consumer on a connection of its own (losing it affects only this consumer). */
  async startConsumer(spec: ConsumerSpec): Promise<JobConsumer> {
    const o = this.deps.options;
    this.consumerSeq += 1;
    const connection = this.newConnection(spec.name ?? `${o.connectionName}-consumer-${this.consumerSeq}`);
    const serves: LaneFilter[] = spec.serves.map((s) => ({
      environment: s.environment,
      model: s.model,
      subcloud: s.subcloud ?? '_',
    }));
    const concurrency = spec.concurrency ?? o.concurrency;
    const consumer = new JobConsumer({
      connection,
      pool: this.deps.pool,
      publisher: this.publisher,
      log: this.deps.log,
      counters: this.counters,
      handler: spec.handler,
      ...(spec.onExpired ? { onExpired: spec.onExpired } : {}),
      ...(spec.observer ? { observer: spec.observer } : {}),
      options: {
        serves,
        concurrency,
        // Prefetch sized to capacity: a lane never holds more unacked jobs than the consumer can run.
        lanePrefetch: spec.lanePrefetch ?? Math.min(o.lanePrefetch, concurrency),
        weights: spec.weights ?? o.weights,
        pollMs: o.lanePollMs,
        policy: o.policy,
        topology: o.topology,
        laneIdleMs: o.laneIdleMs,
      },
    });
    this.consumers.push({ consumer, connection });
    await connection.start();
    await consumer.start();
    return consumer;
  }

  listQuarantine(limit = 100): Promise<QuarantinedJob[]> {
    return listQuarantine(this.requireConnection(), limit, this.names);
  }

  replayQuarantine(sel: Selection): Promise<number> {
    return replayQuarantine(
      this.requireConnection(),
      this.publisher,
      this.counters,
      sel,
      new Date(),
      this.names,
    );
  }

  purgeQuarantine(sel: Selection): Promise<number> {
    return purgeQuarantine(this.requireConnection(), this.publisher, sel, new Date(), this.names);
  }

  /** Depth and consumers of every fixed queue and registered lane, counters and rates since the last call. */
  async health(): Promise<RoutingHealth> {
    const lanes = await this.lanes.findLanes(this.deps.pool);
    const Q = this.names.queues;
    const fixed = [
      Q.quarantine,
      Q.expired,
      Q.recorderEvents,
      Q.records,
      Q.recordsDead,
      ...this.deps.options.topology.retryDelaysMs.map((d) => retryTierName(d, this.names.deployment)),
    ];
    const depths = await readQueueDepths(this.requireConnection(), [
      ...fixed,
      ...lanes.map((l) => l.queueName),
    ]);
    const nowMs = Date.now();
    const queues = depths.map((d) => {
      let meter = this.queueMeters.get(d.queue);
      if (!meter) this.queueMeters.set(d.queue, (meter = new RateMeter()));
      return { ...d, ratesPerS: meter.read(this.counters.of(d.queue), nowMs).ratesPerS };
    });
    return {
      queueType: this.names.queueType,
      rates: this.meter.read(this.counters.total, nowMs),
      publisher: { ...this.publisher.stats },
      queues,
      quarantineSize: queues.find((q) => q.queue === Q.quarantine)?.messages,
    };
  }

  /**
   * Deletes lanes nobody published to for `laneIdleMs` that are empty and have no consumer (the broker
   * checks both atomically: queue.delete if-empty if-unused), and forgets them in the registry; meant for the
   * task runner. Explicit, because x-expires alone is unreliable here: every passive declare (health reads)
   * renews its lease. A publisher that still has the lane cached gets its job back unroutable and declares
   * the lane again. Returns how many lanes were removed.
   */
  async pruneIdleLanes(now = new Date(), signal?: AbortSignal): Promise<number> {
    const seenBefore = new Date(now.getTime() - this.deps.options.laneIdleMs);
    const idle = (await this.lanes.findLanes(this.deps.pool)).filter((l) => l.lastPublishedAt < seenBefore);
    let removed = 0;
    for (const lane of idle) {
      if (signal?.aborted) break; // the task's lock lost (or stopping): another process may prune now
      const gone = await deleteQueueIfIdle(this.requireConnection(), lane.queueName);
      if (gone && (await this.lanes.deleteLane(this.deps.pool, lane.queueName, seenBefore))) removed += 1;
    }
    return removed;
  }

  /** Consumers drain and close first, then the publisher flushes every unconfirmed message. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const errors: unknown[] = [];
      for (const { consumer, connection } of this.consumers.splice(0)) {
        await consumer.stop().catch((e: unknown) => errors.push(e));
        await connection.stop().catch((e: unknown) => errors.push(e));
      }
      await this.publisher.stop().catch((e: unknown) => errors.push(e));
      await this.connection.stop().catch((e: unknown) => errors.push(e));
      if (errors.length > 0) this.deps.log.error({ errors }, 'routing stop had errors');
    })();
    return this.stopping;
  }

  private requireConnection() {
    const conn = this.connection.connection;
    if (!conn) throw new AppError('store_unavailable', 'routing is not connected to RabbitMQ');
    return conn;
  }

  private newConnection(name: string): ManagedConnection {
    return new ManagedConnection({
      url: this.deps.options.amqpUrl,
      name,
      log: this.deps.log,
      reconnectDelayMs: this.deps.options.reconnectDelayMs,
    });
  }
}
