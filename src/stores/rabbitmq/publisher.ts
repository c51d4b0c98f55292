// Confirmed publishing: persistent messages on a confirm channel, a bounded window of unconfirmed messages
// (publish() waits for room: backpressure), and republish of everything unconfirmed after a reconnect.
import type { ConfirmChannel, Options } from 'amqplib';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { ManagedConnection } from './reconnect.js';

export interface OutgoingMessage {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options?: Options.Publish;
}

export interface PublisherOptions {
  connection: ManagedConnection;
  log: Logger;
  maxInFlight: number;
  /** Broker nacks / unroutable returns tolerated per message before publish() rejects. */
  maxAttempts?: number;
  /** Called when a mandatory message came back unroutable (e.g. its queue expired): re-declare, then retry. */
  onReturned?: (msg: OutgoingMessage) => Promise<void>;
}

interface Entry {
  seq: number;
  msg: OutgoingMessage;
  resolve: () => void;
  reject: (err: unknown) => void;
  attempts: number;
  returned: boolean;
  /** Waiting for onReturned (re-declare) before it is sent again. */
  reDeclaring: boolean;
  /** Channel it was last sent on; undefined while waiting to be (re)sent. */
  sentOn: ConfirmChannel | undefined;
}

export interface PublisherStats {
  published: number;
  confirmed: number;
  republished: number;
  nacked: number;
  returned: number;
  inFlight: number;
}

const SEQ_HEADER = 'x-rty-pub-seq';

export class ConfirmedPublisher {
  private channel: ConfirmChannel | undefined;
  private readonly entries = new Map<number, Entry>();
  private unsent: Entry[] = [];
  private seq = 0;
  private slotWaiters: Array<() => void> = [];
  private idleWaiters: Array<() => void> = [];
  private pumping = false;
  private closed = false;
  private readonly log: Logger;
  readonly stats: PublisherStats = {
    published: 0,
    confirmed: 0,
    republished: 0,
    nacked: 0,
    returned: 0,
    inFlight: 0,
  };

  constructor(private readonly opts: PublisherOptions) {
    this.log = opts.log.child({ component: 'amqp-publisher' });
  }

  async start(): Promise<void> {
    await this.opts.connection.addHook(
      'publisher',
      async (conn) => {
        const ch = await conn.createConfirmChannel();
        ch.on('error', () => undefined); // the connection hook handles loss
        ch.on('return', (m: { properties: { headers?: Record<string, unknown> } }) => {
          const seq = Number(m.properties.headers?.[SEQ_HEADER]);
          const e = this.entries.get(seq);
          if (e) e.returned = true;
          this.stats.returned += 1;
        });
        ch.on('close', () => {
          if (this.channel === ch) this.channel = undefined;
        });
        ch.on('drain', () => this.pump());
        this.channel = ch;
        // Everything not confirmed on the old channel goes out again, in publish order.
        // (An entry whose confirm callback already failed with 'channel closed' is in neither list.)
        const all = [...this.entries.values()].filter((e) => !e.reDeclaring).sort((a, b) => a.seq - b.seq);
        this.stats.republished += all.length - this.unsent.length;
        for (const e of all) e.sentOn = undefined;
        this.unsent = all;
        this.pump();
      },
      () => {
        this.channel = undefined;
      },
    );
  }

  /** Resolves once the broker has confirmed the message (the submission counts as accepted only then). */
  async publish(msg: OutgoingMessage): Promise<void> {
    if (this.closed) throw new AppError('store_unavailable', 'publisher is stopped');
    while (this.entries.size >= this.opts.maxInFlight) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
      if (this.closed) throw new AppError('store_unavailable', 'publisher is stopped');
    }
    return new Promise<void>((resolve, reject) => {
      this.seq += 1;
      const e: Entry = {
        seq: this.seq,
        msg,
        resolve,
        reject,
        attempts: 0,
        returned: false,
        reDeclaring: false,
        sentOn: undefined,
      };
      this.entries.set(e.seq, e);
      this.stats.published += 1;
      this.stats.inFlight = this.entries.size;
      this.unsent.push(e);
      this.pump();
    });
  }

  /** Publishes many; resolves when all are confirmed, rejects with the first failure. */
  publishAll(msgs: OutgoingMessage[]): Promise<void> {
    return Promise.all(msgs.map((m) => this.publish(m))).then(() => undefined);
  }

  /** Refuses new messages and waits (bounded by the caller's deadline) until every one is confirmed. */
  async stop(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      for (const w of this.slotWaiters.splice(0)) w();
    }
    if (this.entries.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const ch = this.channel;
    this.channel = undefined;
    if (ch) await ch.close().catch(() => undefined);
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.unsent.length > 0) {
        const ch = this.channel;
        if (!ch) return; // resent by the connect hook
        const e = this.unsent.shift()!;
        e.sentOn = ch;
        const options: Options.Publish = {
          persistent: true,
          ...e.msg.options,
          headers: { ...e.msg.options?.headers, [SEQ_HEADER]: e.seq },
        };
        let writable: boolean;
        try {
          writable = ch.publish(e.msg.exchange, e.msg.routingKey, e.msg.content, options, (err) =>
            this.onConfirm(e, ch, err),
          );
        } catch {
          // The channel closed under us: the message waits for the next connection.
          e.sentOn = undefined;
          this.unsent.unshift(e);
          return;
        }
        if (!writable) return; // wait for 'drain'
      }
    } finally {
      this.pumping = false;
    }
  }

  private onConfirm(e: Entry, ch: ConfirmChannel, err: unknown): void {
    if (e.sentOn !== ch || !this.entries.has(e.seq)) return; // superseded by a resend
    if (err) {
      e.sentOn = undefined;
      if ((err as Error).message === 'channel closed') return; // resent after reconnect
      this.stats.nacked += 1;
      this.retryOrFail(e, new AppError('store_unavailable', 'broker nacked the message'));
      return;
    }
    if (e.returned) {
      e.sentOn = undefined;
      e.returned = false;
      e.reDeclaring = true;
      void this.handleReturned(e);
      return;
    }
    this.stats.confirmed += 1;
    this.finish(e);
    e.resolve();
  }

  private async handleReturned(e: Entry): Promise<void> {
    try {
      await this.opts.onReturned?.(e.msg);
    } catch (err) {
      this.log.warn({ err, routingKey: e.msg.routingKey }, 're-declare after return failed');
    }
    e.reDeclaring = false;
    this.retryOrFail(
      e,
      new AppError('store_unavailable', `message unroutable: ${e.msg.exchange}/${e.msg.routingKey}`),
    );
  }

  private retryOrFail(e: Entry, error: AppError): void {
    e.attempts += 1;
    if (e.attempts >= (this.opts.maxAttempts ?? 3)) {
      this.finish(e);
      e.reject(error);
      return;
    }
    this.unsent.push(e);
    this.pump();
  }

  private finish(e: Entry): void {
    this.entries.delete(e.seq);
    this.stats.inFlight = this.entries.size;
    this.slotWaiters.shift()?.();
    if (this.entries.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}
