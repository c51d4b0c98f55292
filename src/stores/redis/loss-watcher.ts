// Notices that Redis lost its data (FLUSHALL, a restart without persistence, a failover to an empty replica)
// and that its connection came back, so that state rebuilt from elsewhere is rebuilt at once, not at the next
// heartbeat. Loss is seen through a sentinel key holding an epoch id: gone or changed means the data is gone.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../platform/logger.js';
import type { Redis } from './client.js';

type Handler = () => Promise<unknown> | unknown;

export class RedisLossWatcher {
  private epoch: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<boolean> | undefined;
  private recovering: Promise<void> | undefined;
  private readonly lossHandlers = new Set<Handler>();
  private readonly reconnectHandlers = new Set<Handler>();
  private connectedOnce = false;
  private readonly log: Logger;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly opts: { intervalMs: number; log: Logger },
  ) {
    this.log = opts.log.child({ component: 'redis-loss-watcher' });
  }

  /** `fn` runs after every detected loss of the data (once per loss per process). */
  onLoss(fn: Handler): () => void {
    this.lossHandlers.add(fn);
    return () => this.lossHandlers.delete(fn);
  }

  /** `fn` runs after every reconnection (data kept or not). */
  onReconnect(fn: Handler): () => void {
    this.reconnectHandlers.add(fn);
    return () => this.reconnectHandlers.delete(fn);
  }

  async start(): Promise<void> {
    if (this.timer) return;
    this.redis.on('ready', this.onReady);
    this.connectedOnce = this.redis.status === 'ready';
    await this.check().catch(() => false);
    this.timer = setInterval(() => void this.check().catch(() => false), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.redis.off('ready', this.onReady);
  }

  /** Resolves once the recovery of the last detected loss (every onLoss handler) has finished. */
  async settled(): Promise<void> {
    await this.recovering;
  }

  /**
   * Checks the sentinel now; true when the data was found lost (and recovery started). The first check of a
   * process adopts the epoch it finds (or creates one): a process starting after a flush cannot tell.
   */
  check(): Promise<boolean> {
    this.checking ??= this.checkOnce().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async checkOnce(): Promise<boolean> {
    let current = await this.redis.get(this.key);
    if (current === null) {
      await this.redis.set(this.key, randomBytes(8).toString('hex'), 'NX');
      current = await this.redis.get(this.key);
    }
    const known = this.epoch;
    this.epoch = current ?? undefined;
    if (known === undefined || current === known) return false;
    this.log.warn({ key: this.key }, 'Redis data lost; rebuilding live state');
    this.recovering = this.run(this.lossHandlers, 'loss');
    return true;
  }

  private readonly onReady = (): void => {
    if (!this.connectedOnce) {
      this.connectedOnce = true;
      return;
    }
    void this.run(this.reconnectHandlers, 'reconnect');
    void this.check().catch(() => false);
  };

  private async run(handlers: Set<Handler>, what: string): Promise<void> {
    await Promise.all(
      [...handlers].map(async (h) => {
        try {
          await h();
        } catch (err) {
          this.log.warn({ err, what }, 'Redis recovery handler failed');
        }
      }),
    );
  }
}
