// A RabbitMQ connection that reconnects by itself: on every (re)connection it runs its setup hooks in order
// (re-assert topology, reopen channels, republish, resume consumers); on loss it backs off and tries again.
import type { Logger } from '../../platform/logger.js';
import { connectAmqp, type AmqpConnection } from './connection.js';

export type ConnectHook = (conn: AmqpConnection) => Promise<void>;

export interface ManagedConnectionOptions {
  url: string;
  /** Shown by `rabbitmqctl list_connections client_properties` as connection_name. */
  name: string;
  log: Logger;
  reconnectDelayMs: number;
  /** Cap of the doubling delay (5 s): a broker back from a restart is found within seconds, at the cost of
   * one refused TCP connect per 5 s per connection while it is down. */
  maxReconnectDelayMs?: number;
}

export class ManagedConnection {
  private conn: AmqpConnection | undefined;
  private readonly hooks: Array<{ name: string; onConnect: ConnectHook; onLost?: () => void }> = [];
  private stopped = false;
  private started = false;
  private timer: NodeJS.Timeout | undefined;
  private delay: number;
  private readyWaiters: Array<() => void> = [];
  private connecting: Promise<void> | undefined;
  /** Increments on every successful (re)connection. */
  generation = 0;
  /** When the current connection was made (performance.now()); undefined while disconnected. */
  private connectedAt: number | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: ManagedConnectionOptions) {
    this.delay = opts.reconnectDelayMs;
    this.log = opts.log.child({ component: 'amqp', connection: opts.name });
  }

  /** Registers setup for every connection; runs now too if already connected. */
  async addHook(name: string, onConnect: ConnectHook, onLost?: () => void): Promise<void> {
    this.hooks.push({ name, onConnect, onLost });
    if (this.conn) await onConnect(this.conn);
  }

  /** First connection; throws if the broker is unreachable now (later losses reconnect by themselves). */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.connectOnce();
  }

  get connection(): AmqpConnection | undefined {
    return this.conn;
  }

  /** How long the broker has been reachable without a break (0 while disconnected). */
  connectedForMs(): number {
    return this.conn && this.connectedAt !== undefined ? performance.now() - this.connectedAt : 0;
  }

  /** Resolves when connected and every hook has run. */
  ready(): Promise<void> {
    if (this.conn) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    await this.connecting?.catch(() => undefined);
    const c = this.conn;
    this.conn = undefined;
    if (c) await c.close().catch(() => undefined);
    for (const w of this.readyWaiters.splice(0)) w();
  }

  private connectOnce(): Promise<void> {
    this.connecting = (async () => {
      const conn = await connectAmqp(this.opts.url, this.opts.name);
      let lost = false;
      const onLost = (err?: unknown) => {
        if (lost) return;
        lost = true;
        if (this.conn === conn) {
          this.conn = undefined;
          this.connectedAt = undefined;
        }
        if (this.stopped) return;
        this.log.warn({ err }, 'connection lost; reconnecting');
        for (const h of this.hooks) h.onLost?.();
        this.schedule();
      };
      conn.on('error', (err: unknown) => onLost(err));
      conn.on('close', (err: unknown) => onLost(err));
      try {
        for (const h of this.hooks) await h.onConnect(conn);
      } catch (err) {
        // A failed hook leaves a half-set-up connection: drop it and start over.
        await conn.close().catch(() => undefined);
        throw err;
      }
      if (lost) throw new Error('connection lost during setup');
      this.conn = conn;
      this.connectedAt = performance.now();
      this.generation += 1;
      this.delay = this.opts.reconnectDelayMs;
      for (const w of this.readyWaiters.splice(0)) w();
    })();
    return this.connecting.finally(() => (this.connecting = undefined));
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, this.opts.maxReconnectDelayMs ?? 5_000);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      this.connectOnce().catch((err: unknown) => {
        this.log.warn({ err, retryInMs: this.delay }, 'reconnect failed');
        this.schedule();
      });
    }, wait);
  }
}
