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

/** Messages that may wait (beyond the in-flight window) before publish() itself waits. */
const QUEUE_FACTOR = 8;

export interface PublisherStats {
  published: number;
  confirmed: number;
  republished: number;
  nacked: number;
  returned: number;
  inFlight: number;
}

export class ConfirmedPublisher {
  private channel: ConfirmChannel | undefined;
  private readonly entries = new Map<number, Entry>();
  /** Waiting to be sent, in order, from unsentHead on (a head index: Array.shift is O(n)). */
  private unsent: Entry[] = [];
  private unsentHead = 0;
  /** Sent on the current channel and not yet confirmed. */
  private onWire = 0;
  private seq = 0;
  private slotWaiters: Array<() => void> = [];
  private slotHead = 0;
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
        // basic.return for a message precedes its basic.ack, so every in-flight entry with the returned
        // routing key on this channel is a candidate; marking them all costs at most a duplicate (handled
        // downstream by job id) and saves a per-message header to match on.
        ch.on('return', (m: { fields: { exchange: string; routingKey: string } }) => {
          this.stats.returned += 1;
          for (const e of this.entries.values())
            if (
              e.sentOn === ch &&
              e.msg.exchange === m.fields.exchange &&
              e.msg.routingKey === m.fields.routingKey
            )
              e.returned = true;
        });
        ch.on('close', () => {
          if (this.channel === ch) this.channel = undefined;
        });
        ch.on('drain', () => this.pump());
        this.channel = ch;
        // Everything not confirmed on the old channel goes out again, in publish order.
        // (An entry whose confirm callback already failed with 'channel closed' is in neither list.)
        const all = [...this.entries.values()].filter((e) => !e.reDeclaring).sort((a, b) => a.seq - b.seq);
        this.stats.republished += all.length - (this.unsent.length - this.unsentHead);
        for (const e of all) e.sentOn = undefined;
        this.unsent = all;
        this.unsentHead = 0;
        this.onWire = 0;
        this.pump();
      },
      () => {
        this.channel = undefined;
        this.onWire = 0;
      },
    );
  }

  /**
   * Resolves once the broker has confirmed the message (the submission counts as accepted only then).
   * At most `maxInFlight` messages are on the wire unconfirmed; later ones wait in order, and past
   * QUEUE_FACTOR x maxInFlight waiting messages the caller waits too (backpressure).
   */
  publish(msg: OutgoingMessage): Promise<void> {
    if (this.closed) return Promise.reject(new AppError('store_unavailable', 'publisher is stopped'));
    if (this.entries.size >= this.opts.maxInFlight * QUEUE_FACTOR)
      return new Promise<void>((resolve) => this.slotWaiters.push(resolve)).then(() => this.publish(msg));
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
      for (const w of this.slotWaiters.splice(0).slice(this.slotHead)) w();
      this.slotHead = 0;
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
      while (this.unsentHead < this.unsent.length && this.onWire < this.opts.maxInFlight) {
        const ch = this.channel;
        if (!ch) return; // resent by the connect hook
        const e = this.unsent[this.unsentHead]!;
        e.sentOn = ch;
        const options: Options.Publish = { persistent: true, ...e.msg.options };
        let writable: boolean;
        try {
          writable = ch.publish(e.msg.exchange, e.msg.routingKey, e.msg.content, options, (err) =>
            this.onConfirm(e, ch, err),
          );
        } catch {
          // The channel closed under us: the message waits for the next connection.
          e.sentOn = undefined;
          return;
        }
        this.unsentHead += 1;
        this.onWire += 1;
        if (!writable) return; // wait for drain
      }
    } finally {
      if (this.unsentHead > 1024 && this.unsentHead * 2 > this.unsent.length) {
        this.unsent = this.unsent.slice(this.unsentHead);
        this.unsentHead = 0;
      }
      this.pumping = false;
    }
  }

  private onConfirm(e: Entry, ch: ConfirmChannel, err: unknown): void {
    if (e.sentOn !== ch || !this.entries.has(e.seq)) return; // superseded by a resend
    if (ch === this.channel) this.onWire -= 1;
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
      this.pump();
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

  /** FIFO without Array.shift (O(n) on the thousands of waiters a burst can queue). */
  private wakeOneWaiter(): void {
    if (this.slotHead >= this.slotWaiters.length) return;
    const w = this.slotWaiters[this.slotHead]!;
    this.slotHead += 1;
    if (this.slotHead > 1024 && this.slotHead * 2 > this.slotWaiters.length) {
      this.slotWaiters = this.slotWaiters.slice(this.slotHead);
      this.slotHead = 0;
    }
    w();
  }

  private finish(e: Entry): void {
    this.entries.delete(e.seq);
    this.stats.inFlight = this.entries.size;
    this.wakeOneWaiter();
    this.pump(); // a window slot is free
    if (this.entries.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}
