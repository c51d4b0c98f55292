// The consuming side of the records stream: takes record batches from RabbitMQ (prefetch N), flushes them to
// the recorder on size or after a short wait, and acks only after RecorderService.record() returned. A store
// outage (MongoDB or PostgreSQL unreachable) keeps the batch unacked and retries it with backoff, so nothing is
// lost and the rest stays queued; a message or event that breaks the contract goes to the dead-letter queue.
import type { Registry } from 'prom-client';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import { QueueConsumer, type Delivery } from '../../stores/rabbitmq/consumer.js';
import { ConfirmedPublisher } from '../../stores/rabbitmq/publisher.js';
import type { ManagedConnection } from '../../stores/rabbitmq/reconnect.js';
import {
  assertTopology,
  DEFAULT_TOPOLOGY_NAMES,
  STORES_HEADER,
  storesId,
  holdDeploymentMarker,
  RECORDS_ROUTING_KEY,
  recordsTopology,
  type TopologyNames,
} from '../../stores/rabbitmq/topology.js';
import { decodeLifecycleLog } from './lifecycle-log.js';
import { decodeRecordBatch, encodeRecordBatch, type RecordBatch } from './record-stream.contracts.js';
import type { RecordOutcome } from './recorder.service.js';
import { isTransientStoreError } from './record-stream.errors.js';
import { jsonText } from './storable.js';
import { oldestAt, registerRecordStreamMetrics, type RecordsLag } from './record-stream.metrics.js';

export interface RecordStreamConsumerOptions {
  /** Unacked messages held at once (basic.qos); also the most messages one recorder call takes. */
  prefetch: number;
  /** A batch is flushed once it holds this many events … */
  batchMaxEvents: number;
  /** … or this long after its first message arrived. */
  batchMaxWaitMs: number;
  /** First retry delay after a failed batch; doubles up to maxRetryDelayMs. */
  retryDelayMs: number;
  maxRetryDelayMs: number;
}

export const defaultRecordStreamConsumerOptions: RecordStreamConsumerOptions = {
  prefetch: 64,
  batchMaxEvents: 500,
  batchMaxWaitMs: 50,
  retryDelayMs: 500,
  maxRetryDelayMs: 30_000,
};

/** What the consumer needs of RecorderService. */
export interface BatchRecorder {
  record(events: unknown[]): Promise<RecordOutcome[]>;
  /** Resolves when the records store answers; a failing batch is taken for poison only then. */
  ping?(): Promise<void>;
}

interface Held {
  delivery: Delivery;
  events: unknown[];
  /** Epoch ms of its oldest event (records lag), NaN when none carries a time. */
  oldestAt: number;
}

export interface RecordStreamStats {
  messages: number;
  events: number;
  recorded: number;
  duplicates: number;
  /** Events dropped because they were past their namespace's retention already. */
  expired: number;
  deadLettered: number;
  failedAttempts: number;
}

/** Back-off before each retry of a lone failing event (then it is dead-lettered with its error). */
const SINGLETON_RETRY_MS = [50, 250];

export class RecordStreamConsumer {
  private readonly consumer: QueueConsumer;
  private readonly deadLetters: ConfirmedPublisher;
  private readonly options: RecordStreamConsumerOptions;
  private readonly names: TopologyNames;
  /** storesId of deploymentStores: stamped on each message (publisher) / compared (consumer). */
  private readonly stamp: string | undefined;
  private buffer: Held[] = [];
  private bufferedEvents = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private started = false;
  /** Dead letters of broken envelopes in progress (stop waits, so none is acked after the channel closed). */
  private readonly side = new Set<Promise<unknown>>();
  /** Wakes a retry wait early on stop. */
  private wake: (() => void) | undefined;
  /** Oldest event time of the batch being written (records lag). */
  private inFlight: number | undefined;
  private inFlightEvents = 0;
  private lastRecordedAt: number | null = null;
  private readonly log: Logger;
  readonly stats: RecordStreamStats = {
    messages: 0,
    events: 0,
    recorded: 0,
    duplicates: 0,
    expired: 0,
    deadLettered: 0,
    failedAttempts: 0,
  };

  constructor(
    private readonly deps: {
      /** Owned by the caller (started before start(), stopped after stop()). */
      connection: ManagedConnection;
      recorder: BatchRecorder;
      log: Logger;
      options?: Partial<RecordStreamConsumerOptions>;
      /** The deployment's exchange and queue names (default: the unprefixed ones). */
      names?: TopologyNames;
      /** Where records lag and dead letters are exported (prom-client registry of the process). */
      registry?: Registry;
      /**
       * The stores these queues feed (e.g. MongoDB database and PostgreSQL schema): when set, start() refuses
       * queues that a backbone with other stores uses (holdDeploymentMarker).
       */
      deploymentStores?: string;
    },
  ) {
    this.names = deps.names ?? DEFAULT_TOPOLOGY_NAMES;
    this.stamp = deps.deploymentStores === undefined ? undefined : storesId(deps.deploymentStores);
    if (deps.registry) registerRecordStreamMetrics(deps.registry, this);
    this.log = deps.log.child({ component: 'record-stream-consumer' });
    this.options = { ...defaultRecordStreamConsumerOptions, ...deps.options };
    this.consumer = new QueueConsumer({
      connection: deps.connection,
      log: deps.log,
      prefetchPerQueue: this.options.prefetch,
      setup: (ch) => assertTopology(ch, recordsTopology(this.names)),
      onDelivery: (d) => this.onDelivery(d),
      // Held deliveries of a lost channel come back from the broker: drop our copies.
      onChannelLost: () => this.dropBuffer(),
    });
    this.deadLetters = new ConfirmedPublisher({
      connection: deps.connection,
      log: deps.log,
      maxInFlight: 16,
    });
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const stores = this.deps.deploymentStores;
    if (stores !== undefined)
      await this.deps.connection.addHook(`records-deployment:${this.names.deployment}`, (conn) =>
        holdDeploymentMarker(conn, this.names, stores),
      );
    await this.deadLetters.start();
    await this.consumer.start();
    await this.consumer.addQueue(this.names.queues.records, async () => undefined);
    // The routing layer's lifecycle events become routing/error logs (same batches, same guarantees).
    await this.consumer.addQueue(this.names.queues.recorderEvents, async () => undefined);
  }

  /** Records lag: the age of the oldest event this consumer holds and has not written yet. */
  lag(now = Date.now()): RecordsLag {
    let oldest = this.inFlight ?? NaN;
    for (const h of this.buffer)
      if (!(h.oldestAt >= oldest)) oldest = Number.isNaN(oldest) ? h.oldestAt : Math.min(oldest, h.oldestAt);
    const heldEvents = this.bufferedEvents + this.inFlightEvents;
    return {
      lagSeconds: heldEvents === 0 || Number.isNaN(oldest) ? 0 : Math.max(0, (now - oldest) / 1000),
      heldEvents,
      lastRecordedAt: this.lastRecordedAt,
    };
  }

  /** No new deliveries; the batch in hand is recorded and acked (or, during an outage, left to the broker). */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      await this.consumer.cancelAll();
      clearTimeout(this.timer);
      this.timer = undefined;
      this.wake?.();
      this.kick();
      await this.flushing;
      await Promise.allSettled([...this.side]);
      await this.consumer.stop(); // unacked deliveries (if any) go back to the queue
      await this.deadLetters.stop();
    })();
    return this.stopped;
  }

  private onDelivery(d: Delivery): void {
    this.stats.messages += 1;
    const decoded: { batch: RecordBatch } | { error: string } =
      d.queue === this.names.queues.recorderEvents
        ? ((r) => ('error' in r ? r : { batch: { v: 1 as const, events: [r.event] } }))(
            decodeLifecycleLog(d.message.content),
          )
        : decodeRecordBatch(d.message.content);
    if ('error' in decoded) {
      const p = this.deadLetter(
        d,
        d.message.content,
        d.queue === this.names.queues.records
          ? `message breaks the records envelope: ${decoded.error}`
          : decoded.error,
      )
        .then((ok) => (ok ? d.ack() : undefined))
        .finally(() => this.side.delete(p));
      this.side.add(p);
      return;
    }
    // Published by a backbone of this deployment's names but other stores (e.g. a stopped deployment's
    // backlog, whose marker is gone): never recorded here, dead-lettered with the reason.
    const stamp: unknown = d.message.properties.headers?.[STORES_HEADER];
    if (this.stamp !== undefined && stamp !== undefined && String(stamp) !== this.stamp) {
      const p = this.deadLetter(
        d,
        d.message.content,
        `published by a backbone of deployment "${this.names.deployment || '(default)'}" with other stores ` +
          `(stores id ${String(stamp)}, this one ${this.stamp}): not recorded here`,
        decoded.batch.events.length,
        RECORDS_ROUTING_KEY,
      )
        .then((ok) => (ok ? d.ack() : undefined))
        .finally(() => this.side.delete(p));
      this.side.add(p);
      return;
    }
    this.buffer.push({
      delivery: d,
      events: decoded.batch.events,
      oldestAt: oldestAt(decoded.batch.events),
    });
    this.bufferedEvents += decoded.batch.events.length;
    if (this.flushing) return; // the running flush takes it next
    if (this.bufferedEvents >= this.options.batchMaxEvents || this.buffer.length >= this.options.prefetch)
      this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.options.batchMaxWaitMs);
  }

  private kick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.flushing || this.buffer.length === 0) return;
    this.flushing = this.flushLoop().finally(() => {
      this.flushing = undefined;
      // Arrived during the last record() call and not taken: schedule it.
      if (this.buffer.length > 0 && !this.stopping)
        this.timer ??= setTimeout(() => this.kick(), this.options.batchMaxWaitMs);
    });
  }

  private async flushLoop(): Promise<void> {
    while (this.buffer.length > 0) {
      const batch: Held[] = [];
      let events = 0;
      while (this.buffer.length > 0 && (batch.length === 0 || events < this.options.batchMaxEvents)) {
        const h = this.buffer.shift()!;
        batch.push(h);
        events += h.events.length;
      }
      this.bufferedEvents -= events;
      await this.recordBatch(batch);
    }
  }

  private dropBuffer(): void {
    this.buffer = [];
    this.bufferedEvents = 0;
  }

  /** Records one batch until it is acked, dead-lettered or void (its channel is gone: the broker redelivers). */
  private async recordBatch(batch: Held[]): Promise<void> {
    let attempt = 0;
    for (;;) {
      const live = batch.filter((h) => h.delivery.isLive());
      if (live.length === 0) return;
      batch = live;
      const events = batch.flatMap((h) => h.events);
      let outcomes: RecordOutcome[];
      try {
        this.inFlight = oldestAt(events);
        this.inFlightEvents = events.length;
        try {
          outcomes = await this.deps.recorder.record(events);
        } catch (err) {
          if (!(await this.isOutage(err))) {
            // Something in the batch cannot be written: split it at once (no back-off first) until the
            // failing events stand alone; every other event is recorded now, only those are dead-lettered.
            this.stats.failedAttempts += 1;
            outcomes = await this.recordIsolating(events, err);
          } else throw err;
        }
      } catch (err) {
        // Only an outage gets here (isolation rethrows one): the batch is kept and retried, never a strike.
        this.stats.failedAttempts += 1;
        attempt += 1;
        if (this.stopping) {
          // Shutting down during an outage: leave the batch to the broker (requeued when the channel closes).
          for (const h of batch) h.delivery.nack(true);
          return;
        }
        const delay = Math.min(this.options.retryDelayMs * 2 ** (attempt - 1), this.options.maxRetryDelayMs);
        this.log.warn(
          { err, attempt, retryInMs: delay, messages: batch.length },
          'records store unavailable; batch kept and retried',
        );
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = undefined;
        continue;
      } finally {
        this.inFlight = undefined;
        this.inFlightEvents = 0;
      }
      await this.settle(batch, outcomes);
      this.lastRecordedAt = Date.now();
      return;
    }
  }

  /**
   * Bisects a failing list of events: each half is recorded on its own, a failing half is split again, and a
   * single failing event becomes a `rejected` outcome carrying the error. Cost: O(k log n) recorder calls
   * for k poisoned events among n. An outage met on the way is rethrown (the whole batch is retried; every
   * write is idempotent, so what was written meanwhile is a duplicate then).
   */
  private async recordIsolating(events: unknown[], err: unknown): Promise<RecordOutcome[]> {
    if (events.length === 1) {
      // A lone event is tried again a few times (short back-off) before it is refused: an unclassified
      // error may be passing (a failover the classification does not know yet), and a dead letter is final.
      for (const delayMs of SINGLETON_RETRY_MS) {
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        try {
          return await this.deps.recorder.record(events);
        } catch (e) {
          if (await this.isOutage(e)) throw e;
          err = e;
        }
      }
      const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      return [
        {
          status: 'rejected',
          error: new AppError('invalid_request', `record event not storable: ${message}`, undefined, {
            cause: err,
          }),
        },
      ];
    }
    const mid = Math.ceil(events.length / 2);
    const out: RecordOutcome[] = [];
    for (const half of [events.slice(0, mid), events.slice(mid)]) {
      try {
        out.push(...(await this.deps.recorder.record(half)));
      } catch (e) {
        if (await this.isOutage(e)) throw e;
        out.push(...(await this.recordIsolating(half, e)));
      }
    }
    return out;
  }

  /**
   * An error the classification calls an outage is one; any other counts as poison only while the store
   * still answers (a failure the classification does not know, during an outage, must never dead-letter).
   */
  private async isOutage(err: unknown): Promise<boolean> {
    if (isTransientStoreError(err)) return true;
    if (!this.deps.recorder.ping) return false;
    try {
      await this.deps.recorder.ping();
      return false;
    } catch {
      return true;
    }
  }

  /** Counts outcomes, dead-letters refused events (per message), then acks each message. */
  private async settle(batch: Held[], outcomes: RecordOutcome[]): Promise<void> {
    let i = 0;
    for (const h of batch) {
      const mine = outcomes.slice(i, i + h.events.length);
      const refused: { event: unknown; reason: string }[] = [];
      mine.forEach((o, k) => {
        if (o.status === 'rejected') refused.push({ event: h.events[k], reason: o.error.message });
        else if (o.status === 'recorded') this.stats.recorded += 1;
        else if (o.status === 'duplicate') this.stats.duplicates += 1;
        else this.stats.expired += 1;
      });
      i += h.events.length;
      this.stats.events += h.events.length;
      if (refused.length > 0) {
        // Only the refused events, as a records envelope (so a replay goes to the records queue whatever
        // queue they came from); the rest of the message is recorded and acked with it.
        const body = encodeRecordBatch(refused.map((r) => jsonText(r.event)));
        const reason = refused.map((r) => r.reason).join(' | ');
        // Not acked when the dead letter was not confirmed: redelivered, recorded again (idempotent).
        if (!(await this.deadLetter(h.delivery, body, reason, refused.length, RECORDS_ROUTING_KEY))) continue;
      }
      h.delivery.ack();
    }
  }

  /** Publishes to the records dead-letter queue (confirmed); false if it could not. */
  private async deadLetter(
    d: Delivery,
    body: Buffer,
    reason: string,
    events?: number,
    routingKey = d.message.fields.routingKey,
  ): Promise<boolean> {
    try {
      await this.deadLetters.publish({
        exchange: this.names.exchanges.recordsDead,
        // The key a replay publishes it with on the events exchange (`rty records dead replay`).
        routingKey,
        content: body,
        options: {
          persistent: true,
          contentType: 'application/json',
          headers: {
            'x-rty-reason': reason.slice(0, 2000),
            'x-rty-queue': d.queue,
            'x-rty-events': events ?? 1,
            'x-rty-dead-at': new Date().toISOString(),
          },
          ...(d.message.properties.messageId ? { messageId: String(d.message.properties.messageId) } : {}),
        },
      });
      this.stats.deadLettered += events ?? 1;
      this.log.warn({ reason: reason.slice(0, 500), events }, 'record events dead-lettered');
      return true;
    } catch (err) {
      this.log.warn({ err }, 'dead letter not published; the message stays queued');
      return false;
    }
  }
}
