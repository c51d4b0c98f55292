// Manual-ack consumption of a changing set of queues on one channel, with a prefetch per queue; after a
// reconnect it re-runs setup (topology) and resumes every queue. Deliveries from a lost channel are void.
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from '../../platform/logger.js';
import type { AmqpConnection } from './connection.js';
import type { ManagedConnection } from './reconnect.js';

export interface Delivery {
  queue: string;
  message: ConsumeMessage;
  /** Acks on the channel it came from; false if that channel is gone (the broker will redeliver). */
  ack(): boolean;
  /** Rejects; with requeue=false the queue's dead-letter exchange gets it. */
  nack(requeue: boolean): boolean;
  /** True while the channel that delivered it is still open. */
  isLive(): boolean;
}

export interface QueueConsumerOptions {
  connection: ManagedConnection;
  log: Logger;
  /** Unacked deliveries per queue (per-consumer basic.qos). */
  prefetchPerQueue: number;
  /** Runs on every connection before any queue is consumed (e.g. assert topology). */
  setup?: (ch: Channel) => Promise<void>;
  onDelivery: (d: Delivery) => void;
  /** Every delivery handed out before this call is void; buffers holding them must be dropped. */
  onChannelLost?: () => void;
}

interface Subscription {
  /** Declares the queue (and its binding) so that consuming it never fails with 404. */
  assert: (ch: Channel) => Promise<void>;
  tag: string | undefined;
}

export class QueueConsumer {
  private channel: Channel | undefined;
  private readonly subs = new Map<string, Subscription>();
  private stopping = false;
  private readonly log: Logger;

  constructor(private readonly opts: QueueConsumerOptions) {
    this.log = opts.log.child({ component: 'amqp-consumer' });
  }

  async start(): Promise<void> {
    await this.opts.connection.addHook(
      'consumer',
      (conn) => this.attach(conn),
      () => this.lose(),
    );
  }

  get queues(): string[] {
    return [...this.subs.keys()];
  }

  /** Starts consuming `queue` (now if connected, else on connect); idempotent. */
  async addQueue(queue: string, assert: (ch: Channel) => Promise<void>): Promise<void> {
    if (this.subs.has(queue) || this.stopping) return;
    const sub: Subscription = { assert, tag: undefined };
    this.subs.set(queue, sub);
    const ch = this.channel;
    if (ch) await this.consume(ch, queue, sub);
  }

  async removeQueue(queue: string): Promise<void> {
    const sub = this.subs.get(queue);
    if (!sub) return;
    this.subs.delete(queue);
    const ch = this.channel;
    if (ch && sub.tag) await ch.cancel(sub.tag).catch(() => undefined);
  }

  /** Cancels every consumer (no new deliveries); unacked ones stay ackable until closeChannel(). */
  async cancelAll(): Promise<void> {
    this.stopping = true;
    const ch = this.channel;
    if (!ch) return;
    for (const sub of this.subs.values()) if (sub.tag) await ch.cancel(sub.tag).catch(() => undefined);
  }

  async stop(): Promise<void> {
    await this.cancelAll();
    const ch = this.channel;
    this.channel = undefined;
    if (ch) await ch.close().catch(() => undefined);
  }

  private async attach(conn: AmqpConnection): Promise<void> {
    const ch = await conn.createChannel();
    ch.on('error', (err: unknown) => this.log.warn({ err }, 'consumer channel error'));
    ch.on('close', () => {
      if (this.channel !== ch) return;
      this.lose();
      // A channel closed by the server (e.g. a protocol error) is recovered through a fresh connection.
      if (!this.stopping) void conn.close().catch(() => undefined);
    });
    await ch.prefetch(this.opts.prefetchPerQueue, false);
    if (this.opts.setup) await this.opts.setup(ch);
    this.channel = ch;
    for (const [queue, sub] of this.subs) await this.consume(ch, queue, sub);
  }

  private lose(): void {
    if (!this.channel) return;
    this.channel = undefined;
    for (const sub of this.subs.values()) sub.tag = undefined;
    this.opts.onChannelLost?.();
  }

  private async consume(ch: Channel, queue: string, sub: Subscription): Promise<void> {
    await sub.assert(ch);
    const live = () => this.channel === ch;
    const r = await ch.consume(
      queue,
      (message) => {
        if (!message) return; // cancelled by the server (queue deleted); re-added by the owner if needed
        this.opts.onDelivery({
          queue,
          message,
          isLive: live,
          ack: () => {
            if (!live()) return false;
            try {
              ch.ack(message);
              return true;
            } catch {
              return false;
            }
          },
          nack: (requeue) => {
            if (!live()) return false;
            try {
              ch.nack(message, false, requeue);
              return true;
            } catch {
              return false;
            }
          },
        });
      },
      { noAck: false },
    );
    if (this.subs.get(queue) === sub) sub.tag = r.consumerTag;
    else await ch.cancel(r.consumerTag).catch(() => undefined); // removed meanwhile
  }
}
