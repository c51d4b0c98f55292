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

/** The phases of a graceful stop, in the order they run. */
export const SHUTDOWN_PHASES = [
  'refuse-new-work',
  'drain',
  'close-sockets',
  'close-http',
  'close-stores',
] as const;
export type ShutdownPhase = (typeof SHUTDOWN_PHASES)[number];

/**
 * A stop in named phases: each phase runs after the previous one, whatever order its parts were started in
 * (within a phase, in reverse order of registration, like Lifecycle). Idempotent; every part runs even if an
 * earlier one throws, all under one deadline.
 */
export class ShutdownPlan {
  private readonly phases = new Map<ShutdownPhase, Lifecycle>();
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: Logger) {
    for (const p of SHUTDOWN_PHASES) this.phases.set(p, new Lifecycle(log));
  }

  add(phase: ShutdownPhase, name: string, stop: () => Promise<void>): void {
    this.phases.get(phase)!.add(name, stop);
  }

  stop(deadlineMs = 10_000): Promise<void> {
    this.stopping ??= (async () => {
      const deadline = Date.now() + deadlineMs;
      for (const p of SHUTDOWN_PHASES) {
        this.log.debug({ phase: p }, 'shutdown phase');
        await this.phases.get(p)!.stop(Math.max(0, deadline - Date.now()));
      }
    })();
    return this.stopping;
  }
}
