// The publishing side of the records stream (DESIGN §2 step 4): record events go to RabbitMQ as persistent,
// confirmed messages, several events per message. Calls made in the same tick share a message, so a busy job
// flow sends few large messages without adding latency. Satisfies the jobs module's JobRecordSink.
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import { newId } from '../../platform/ids.js';
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
import { encodeRecordBatch, RECORD_BATCH_MAX_EVENTS } from './record-stream.contracts.js';
import type { RecordEventInput } from './records.contracts.js';
import { jsonText } from './storable.js';

export interface RecordStreamPublisherOptions {
  /** Events per message at most (≤ RECORD_BATCH_MAX_EVENTS). */
  maxEventsPerMessage: number;
  /** A message is sealed once its serialized events reach this size (one larger event goes alone). */
  maxMessageBytes: number;
  /** Unconfirmed messages on the wire. */
  maxInFlight: number;
}

export const defaultRecordStreamPublisherOptions: RecordStreamPublisherOptions = {
  maxEventsPerMessage: 200,
  maxMessageBytes: 1024 * 1024,
  maxInFlight: 64,
};

interface OpenBatch {
  parts: string[];
  bytes: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class RecordStreamPublisher {
  private readonly publisher: ConfirmedPublisher;
  private readonly options: RecordStreamPublisherOptions;
  private readonly names: TopologyNames;
  /** storesId of deploymentStores: stamped on each message (publisher) / compared (consumer). */
  private readonly stamp: string | undefined;
  private open: OpenBatch | undefined;
  private flushScheduled = false;
  private starting: Promise<void> | undefined;
  private stopped = false;
  /** Sealed batches not yet handed to the confirmed publisher (stop waits for them). */
  private readonly sending = new Set<Promise<void>>();
  private readonly log: Logger;
  readonly stats = { events: 0, messages: 0 };

  constructor(
    private readonly deps: {
      /** Must be started by its owner; the publisher adds its hooks on first use. */
      connection: ManagedConnection;
      log: Logger;
      options?: Partial<RecordStreamPublisherOptions>;
      /** The deployment's exchange and queue names (default: the unprefixed ones). */
      names?: TopologyNames;
      /** The stores these queues feed: when set, refuses queues a backbone with other stores uses. */
      deploymentStores?: string;
    },
  ) {
    this.names = deps.names ?? DEFAULT_TOPOLOGY_NAMES;
    this.stamp = deps.deploymentStores === undefined ? undefined : storesId(deps.deploymentStores);
    this.log = deps.log.child({ component: 'record-stream-publisher' });
    const o = { ...defaultRecordStreamPublisherOptions, ...deps.options };
    o.maxEventsPerMessage = Math.max(1, Math.min(o.maxEventsPerMessage, RECORD_BATCH_MAX_EVENTS));
    this.options = o;
    this.publisher = new ConfirmedPublisher({
      connection: deps.connection,
      log: deps.log,
      maxInFlight: o.maxInFlight,
      // Unroutable means the records queue is gone (deleted by hand): declare it again, then resend.
      onReturned: () => this.assertTopology(),
    });
  }

  /** Adds the hooks (idempotent); publish() calls it, so the sink can be built synchronously. */
  start(): Promise<void> {
    this.starting ??= (async () => {
      const stores = this.deps.deploymentStores;
      if (stores !== undefined)
        await this.deps.connection.addHook(`records-deployment:${this.names.deployment}`, (conn) =>
          holdDeploymentMarker(conn, this.names, stores),
        );
      await this.deps.connection.addHook(`records-topology:${this.names.deployment}`, async (conn) => {
        const ch = await conn.createChannel();
        ch.on('error', () => undefined); // a refused declare closes the channel and rejects the call: enough
        try {
          await assertTopology(ch, recordsTopology(this.names));
        } finally {
          await ch.close().catch(() => undefined);
        }
      });
      await this.publisher.start();
    })();
    return this.starting;
  }

  /** Resolves once the broker confirmed every message holding these events (the recorder gets them later). */
  publish(events: RecordEventInput[]): Promise<void> {
    if (this.stopped) return Promise.reject(new AppError('store_unavailable', 'record stream is stopped'));
    if (events.length === 0) return Promise.resolve();
    const waits = new Set<Promise<void>>();
    for (const e of events) {
      // Not JSON.stringify: a pass-through field nested thousands deep must not fail the job's publish.
      const part = jsonText(e);
      let b = this.open;
      if (
        b &&
        (b.parts.length >= this.options.maxEventsPerMessage ||
          (b.parts.length > 0 && b.bytes + part.length > this.options.maxMessageBytes))
      ) {
        this.seal();
        b = undefined;
      }
      b ??= this.newBatch();
      b.parts.push(part);
      b.bytes += part.length + 1;
      waits.add(b.done);
    }
    if (!this.flushScheduled && this.open) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.seal();
      });
    }
    return Promise.all(waits).then(() => undefined);
  }

  /** Sends what is pending, refuses new events and waits until every message is confirmed. Idempotent. */
  async stop(): Promise<void> {
    this.seal();
    this.stopped = true;
    await Promise.allSettled([...this.sending]);
    if (this.starting) await this.publisher.stop();
  }

  private newBatch(): OpenBatch {
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.open = { parts: [], bytes: 0, done, resolve, reject };
    return this.open;
  }

  /** Closes the open batch and sends it as one message. */
  private seal(): void {
    const b = this.open;
    this.open = undefined;
    if (!b || b.parts.length === 0) return;
    const content = encodeRecordBatch(b.parts);
    const handedOver = this.start().then(() => {
      const confirmed = this.publisher.publish({
        exchange: this.names.exchanges.events,
        routingKey: RECORDS_ROUTING_KEY,
        content,
        options: {
          persistent: true,
          mandatory: true,
          contentType: 'application/json',
          messageId: newId(),
          type: 'records.batch',
          // The marker guards live processes only; this stamp also guards a stopped deployment's backlog.
          ...(this.stamp ? { headers: { [STORES_HEADER]: this.stamp } } : {}),
        },
      });
      confirmed.then(
        () => {
          this.stats.events += b.parts.length;
          this.stats.messages += 1;
          b.resolve();
        },
        (err: unknown) => {
          this.log.warn({ err, events: b.parts.length }, 'record batch not confirmed');
          b.reject(err);
        },
      );
    });
    handedOver.catch((err: unknown) => b.reject(err));
    const tracked = handedOver.catch(() => undefined);
    this.sending.add(tracked);
    void tracked.then(() => this.sending.delete(tracked));
  }

  private async assertTopology(): Promise<void> {
    const conn = this.deps.connection.connection;
    if (!conn) return;
    const ch = await conn.createChannel();
    ch.on('error', () => undefined); // a refused declare closes the channel and rejects the call: enough
    try {
      await assertTopology(ch, recordsTopology(this.names));
    } finally {
      await ch.close().catch(() => undefined);
    }
  }
}
