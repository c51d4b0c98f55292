// Ordered shutdown: every registered stop runs once, in reverse order, even if an earlier one throws.
import type { Logger } from './logger.js';

export interface Stoppable {
  stop(): Promise<void>;
}

export class Lifecycle {
  private readonly stops: Array<{ name: string; stop: () => Promise<void> }> = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  add(name: string, stop: () => Promise<void>): void {
    this.stops.push({ name, stop });
  }

  /** Idempotent; resolves when every cleanup has run or the deadline passed. */
  stop(deadlineMs = 10_000): Promise<void> {
    this.stopping ??= this.runStops(deadlineMs);
    return this.stopping;
  }

  private async runStops(deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    for (const { name, stop } of [...this.stops].reverse()) {
      const left = Math.max(0, deadline - Date.now());
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          stop(),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`stop of ${name} exceeded the shutdown deadline`)),
              left,
            );
          }),
        ]);
      } catch (err) {
        this.log.error({ err, component: name }, 'stop failed');
      } finally {
        clearTimeout(timer);
      }
    }
  }
}
