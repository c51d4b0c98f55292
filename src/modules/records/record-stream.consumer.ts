// The consuming side of the records stream: takes record batches from RabbitMQ (prefetch N), flushes them to
// the recorder on size or after a short wait, and acks only after RecorderService.record() returned. A store
// outage (MongoDB or PostgreSQL unreachable) keeps the batch unacked and retries it with backoff, so nothing is
// lost and the rest stays queued; a message or event that breaks the contract goes to the dead-letter queue.
import type { Logger } from '../../platform/logger.js';
import { QueueConsumer, type Delivery } from '../../stores/rabbitmq/consumer.js';
import { ConfirmedPublisher } from '../../stores/rabbitmq/publisher.js';
import type { ManagedConnection } from '../../stores/rabbitmq/reconnect.js';
import { assertTopology, EXCHANGES, QUEUES, recordsTopology } from '../../stores/rabbitmq/topology.js';
import { decodeLifecycleLog } from './lifecycle-log.js';
import { decodeRecordBatch, encodeRecordBatch, type RecordBatch } from './record-stream.contracts.js';
import type { RecordOutcome } from './recorder.service.js';
import { isTransientStoreError } from './record-stream.errors.js';

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
  /** Failures of a non-store error before the batch is split and a message still failing is dead-lettered. */
  poisonAttempts: number;
}

export const defaultRecordStreamConsumerOptions: RecordStreamConsumerOptions = {
  prefetch: 64,
  batchMaxEvents: 500,
  batchMaxWaitMs: 50,
  retryDelayMs: 500,
  maxRetryDelayMs: 30_000,
  poisonAttempts: 3,
};

/** What the consumer needs of RecorderService. */
export interface BatchRecorder {
  record(events: unknown[]): Promise<RecordOutcome[]>;
}

interface Held {
  delivery: Delivery;
  events: unknown[];
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

export class RecordStreamConsumer {
  private readonly consumer: QueueConsumer;
  private readonly deadLetters: ConfirmedPublisher;
  private readonly options: RecordStreamConsumerOptions;
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
    },
  ) {
    this.log = deps.log.child({ component: 'record-stream-consumer' });
    this.options = { ...defaultRecordStreamConsumerOptions, ...deps.options };
    this.consumer = new QueueConsumer({
      connection: deps.connection,
      log: deps.log,
      prefetchPerQueue: this.options.prefetch,
      setup: (ch) => assertTopology(ch, recordsTopology()),
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
    await this.deadLetters.start();
    await this.consumer.start();
    await this.consumer.addQueue(QUEUES.records, async () => undefined);
    // The routing layer's lifecycle events become routing/error logs (same batches, same guarantees).
    await this.consumer.addQueue(QUEUES.recorderEvents, async () => undefined);
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
      d.queue === QUEUES.recorderEvents
        ? ((r) => ('error' in r ? r : { batch: { v: 1 as const, events: [r.event] } }))(
            decodeLifecycleLog(d.message.content),
          )
        : decodeRecordBatch(d.message.content);
    if ('error' in decoded) {
      const p = this.deadLetter(
        d,
        d.message.content,
        d.queue === QUEUES.records ? `message breaks the records envelope: ${decoded.error}` : decoded.error,
      )
        .then((ok) => (ok ? d.ack() : undefined))
        .finally(() => this.side.delete(p));
      this.side.add(p);
      return;
    }
    this.buffer.push({ delivery: d, events: decoded.batch.events });
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
    let poisonFailures = 0;
    for (;;) {
      const live = batch.filter((h) => h.delivery.isLive());
      if (live.length === 0) return;
      batch = live;
      let outcomes: RecordOutcome[];
      try {
        outcomes = await this.deps.recorder.record(batch.flatMap((h) => h.events));
      } catch (err) {
        this.stats.failedAttempts += 1;
        attempt += 1;
        const transient = isTransientStoreError(err);
        if (!transient) poisonFailures += 1;
        if (!transient && poisonFailures >= this.options.poisonAttempts) {
          if (batch.length > 1) {
            // One message may be what breaks the batch: record them one by one to find it.
            for (const h of batch) await this.recordBatch([h]);
          } else if (
            await this.deadLetter(batch[0]!.delivery, batch[0]!.delivery.message.content, String(err))
          )
            batch[0]!.delivery.ack();
          return;
        }
        if (this.stopping) {
          // Shutting down during an outage: leave the batch to the broker (requeued when the channel closes).
          for (const h of batch) h.delivery.nack(true);
          return;
        }
        const delay = Math.min(this.options.retryDelayMs * 2 ** (attempt - 1), this.options.maxRetryDelayMs);
        this.log.warn(
          { err, attempt, retryInMs: delay, messages: batch.length },
          transient ? 'records store unavailable; batch kept and retried' : 'record batch failed; retrying',
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
      }
      await this.settle(batch, outcomes);
      return;
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
        const body = encodeRecordBatch(refused.map((r) => JSON.stringify(r.event)));
        const reason = refused.map((r) => r.reason).join(' | ');
        // Not acked when the dead letter was not confirmed: redelivered, recorded again (idempotent).
        if (!(await this.deadLetter(h.delivery, body, reason, refused.length))) continue;
      }
      h.delivery.ack();
    }
  }

  /** Publishes to the records dead-letter queue (confirmed); false if it could not. */
  private async deadLetter(d: Delivery, body: Buffer, reason: string, events?: number): Promise<boolean> {
    try {
      await this.deadLetters.publish({
        exchange: EXCHANGES.recordsDead,
        routingKey: d.message.fields.routingKey,
        content: body,
        options: {
          persistent: true,
          contentType: 'application/json',
          headers: { 'x-rty-reason': reason.slice(0, 2000) },
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
