// Publishing side of routing: jobs into their lanes (declared on demand and registered), retries into delay
// tiers, quarantine and job events, all persistent and confirmed.
import type { Logger } from '../../platform/logger.js';
import { newId } from '../../platform/ids.js';
import { AppError } from '../../platform/errors.js';
import type { Pool } from '../../stores/postgres/pool.js';
import { AdminChannel } from '../../stores/rabbitmq/admin-channel.js';
import { ConfirmedPublisher, type OutgoingMessage } from '../../stores/rabbitmq/publisher.js';
import type { ManagedConnection } from '../../stores/rabbitmq/reconnect.js';
import {
  assertTopology,
  laneQueueName,
  laneTopology,
  retryTierName,
  staticTopology,
  topologyNames,
  type LaneKey,
  type TopologyNames,
  type TopologyOptions,
} from '../../stores/rabbitmq/topology.js';
import type { QueueCounters } from './health.js';
import { LanesRepository } from './lanes.repository.js';
import {
  decodeJob,
  encodeJob,
  jobEventSchema,
  jobMessageSchema,
  type JobEvent,
  type JobEventType,
  type JobMessage,
} from './routing.contracts.js';
import { laneKeyOf, remainingTtlMs } from './routing.rules.js';

/** A lane is re-registered (and re-announced) at most this often per process while it is used. */
export const LANE_REFRESH_MS = 30_000;
/** How long a submit waits for a lost connection to come back before failing with store_unavailable. */
const CONNECT_WAIT_MS = 15_000;

export interface LaneAnnouncement {
  queue: string;
  key: LaneKey;
}

export interface JobPublisherDeps {
  connection: ManagedConnection;
  pool: Pool;
  log: Logger;
  counters: QueueCounters;
  topology: TopologyOptions;
  maxInFlight: number;
  jobTtlMaxMs: number;
}

export class JobPublisher {
  private readonly publisher: ConfirmedPublisher;
  private readonly admin: AdminChannel;
  private readonly lanes: LanesRepository;
  /** This deployment's exchange names (config DEPLOYMENT, carried in the topology options). */
  private readonly names: TopologyNames;
  private readonly laneCache = new Map<string, { until: number; ready: Promise<void>; done: boolean }>();
  /** Lane names by key (escaping runs once per lane, not per message). */
  private readonly laneNames = new Map<string, string>();
  private readonly log: Logger;

  constructor(private readonly deps: JobPublisherDeps) {
    this.log = deps.log.child({ component: 'job-publisher' });
    this.names = topologyNames(deps.topology.deployment, deps.topology.queueType);
    this.lanes = new LanesRepository(this.names.deployment);
    this.admin = new AdminChannel(deps.connection);
    this.publisher = new ConfirmedPublisher({
      connection: deps.connection,
      log: deps.log,
      maxInFlight: deps.maxInFlight,
      onReturned: async (msg) => {
        // The lane was removed by the broker (idle) after we cached it: declare it again.
        this.laneCache.delete(msg.routingKey);
        const job = decodeJob(msg.content);
        if (job) await this.ensureLane(laneKeyOf(job));
      },
    });
  }

  get stats() {
    return this.publisher.stats;
  }

  async start(): Promise<void> {
    // Hooks run in this order on every connection: topology first, then the republish of unconfirmed.
    await this.deps.connection.addHook('routing-topology', async (conn) => {
      this.admin.reset();
      this.laneCache.clear();
      const ch = await conn.createChannel();
      try {
        await assertTopology(ch, staticTopology(this.deps.topology));
      } finally {
        await ch.close().catch(() => undefined);
      }
    });
    await this.publisher.start();
  }

  /** Resolves once the broker confirmed the job: only then is the submission accepted. */
  submit(job: JobMessage, now = new Date()): Promise<void> {
    let parsed: JobMessage;
    try {
      parsed = jobMessageSchema.parse(job);
    } catch (err) {
      return Promise.reject(
        new AppError('invalid_request', `job message breaks its contract: ${String(err)}`),
      );
    }
    if (parsed.ttlMs > this.deps.jobTtlMaxMs)
      return Promise.reject(
        new AppError('invalid_request', `job TTL ${parsed.ttlMs} ms exceeds ${this.deps.jobTtlMaxMs} ms`),
      );
    const key = laneKeyOf(parsed);
    const queue = this.laneName(key);
    const cached = this.laneCache.get(queue);
    // Hot path: the lane is declared and fresh, so no extra await before publishing.
    const ready = cached?.done && cached.until > Date.now() ? undefined : this.ensureLane(key);
    const publish = () =>
      this.publisher.publish(this.laneMessage(parsed, queue, now)).then(() => {
        this.deps.counters.add(queue, 'published');
        this.deps.counters.add(queue, 'confirmed');
      });
    return ready ? ready.then(publish) : publish();
  }

  submitMany(jobs: JobMessage[], now = new Date()): Promise<void> {
    return Promise.all(jobs.map((j) => this.submit(j, now))).then(() => undefined);
  }

  /** Sends a failed job to the delay tier; dead-lettering brings it back to its lane afterwards. */
  async publishRetry(job: JobMessage, delayMs: number, now = new Date()): Promise<void> {
    const key = laneKeyOf(job);
    await this.ensureLane(key);
    await this.publisher.publish({
      exchange: retryTierName(delayMs, this.names.deployment),
      routingKey: this.laneName(key),
      content: encodeJob(job),
      options: { messageId: job.jobId, contentType: 'application/json', timestamp: now.getTime() },
    });
  }

  async publishQuarantine(job: JobMessage | Buffer, reason: string, routingKey: string): Promise<void> {
    await this.publisher.publish({
      exchange: this.names.exchanges.quarantine,
      routingKey,
      content: Buffer.isBuffer(job) ? job : encodeJob(job),
      options: {
        contentType: 'application/json',
        headers: { 'x-rty-reason': reason.slice(0, 500) },
        ...(Buffer.isBuffer(job) ? {} : { messageId: job.jobId }),
      },
    });
  }

  async publishEvent(
    type: JobEventType,
    job: Pick<JobMessage, 'jobId' | 'namespaceId' | 'model' | 'environment' | 'attempt'>,
    extra: { reason?: string; nodeId?: string } = {},
    now = new Date(),
  ): Promise<void> {
    const event: JobEvent = jobEventSchema.parse({
      v: 1,
      eventId: newId(),
      type,
      jobId: job.jobId,
      namespaceId: job.namespaceId,
      model: job.model,
      environment: job.environment,
      attempt: job.attempt,
      at: now.toISOString(),
      ...(extra.reason ? { reason: extra.reason.slice(0, 500) } : {}),
      ...(extra.nodeId ? { nodeId: extra.nodeId } : {}),
    });
    await this.publisher.publish({
      exchange: this.names.exchanges.events,
      routingKey: `job.${type}`,
      content: Buffer.from(JSON.stringify(event)),
      options: { messageId: event.eventId, contentType: 'application/json' },
    });
  }

  /** Declares the lane, records it in the registry and announces it (at most every LANE_REFRESH_MS). */
  ensureLane(key: LaneKey): Promise<void> {
    const queue = this.laneName(key);
    const cached = this.laneCache.get(queue);
    if (cached && cached.until > Date.now()) return cached.ready;
    const ready = (async () => {
      // While (re)connecting, wait (bounded) instead of failing: the caller's submit is simply slower.
      await this.connected();
      const ch = await this.admin.get();
      await assertTopology(ch, laneTopology(key, this.deps.topology));
      await this.lanes.registerLane(this.deps.pool, key);
      const announcement: LaneAnnouncement = { queue, key };
      ch.publish(this.names.exchanges.lanes, '', Buffer.from(JSON.stringify(announcement)), {
        persistent: false,
      });
    })();
    const entry = { until: Date.now() + LANE_REFRESH_MS, ready, done: false };
    this.laneCache.set(queue, entry);
    ready.then(
      () => (entry.done = true),
      () => undefined,
    );
    ready.catch((err: unknown) => {
      this.laneCache.delete(queue);
      this.log.warn({ err, queue }, 'lane declaration failed');
    });
    return ready;
  }

  private async connected(): Promise<void> {
    if (this.deps.connection.connection) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.deps.connection.ready(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new AppError('store_unavailable', 'RabbitMQ is not connected')),
            CONNECT_WAIT_MS,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async stop(): Promise<void> {
    try {
      await this.publisher.stop();
    } finally {
      await this.admin.close();
    }
  }

  private laneName(key: LaneKey): string {
    const k = `${key.environment}\u0000${key.model}\u0000${key.priority}\u0000${key.subcloud}\u0000${key.namespaceId}`;
    let name = this.laneNames.get(k);
    if (name === undefined) {
      if (this.laneNames.size > 100_000) this.laneNames.clear();
      name = laneQueueName(key, this.names.deployment);
      this.laneNames.set(k, name);
    }
    return name;
  }

  private laneMessage(job: JobMessage, queue: string, now: Date): OutgoingMessage {
    return {
      exchange: this.names.exchanges.jobs,
      routingKey: queue,
      content: Buffer.from(JSON.stringify(job)), // already parsed by submit()
      // Few properties on the hot path (each costs encoding on both sides); the job id is in the body.
      options: { persistent: true, mandatory: true, expiration: String(remainingTtlMs(job, now)) },
    };
  }
}
