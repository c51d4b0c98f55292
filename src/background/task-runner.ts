// One runner for recurring work: each task runs on an interval with jitter, on one process at a time
// (PostgreSQL advisory lock per task), with its own error isolation and a clean stop. A lock lost with its
// connection (PostgreSQL restart, a lock session that stops answering its pings) aborts the task's signal; the
// task stops and is retaken on its next turn. A holder that froze loses its lock to the server within the
// lock session's idle timeout (withAdvisoryLock), so another process takes the task over.
import { isAppError } from '../platform/errors.js';
import type { Logger } from '../platform/logger.js';
import type { RecurringTask } from '../platform/tasks.js';
import { withAdvisoryLock, type Pool } from '../stores/postgres/pool.js';

export type { RecurringTask };

export interface TaskRunnerDeps {
  /** Single-runner election: one PostgreSQL advisory lock per task. */
  pool: Pool;
  log: Logger;
  tasks: RecurringTask[];
  /** The lock sessions' idle_session_timeout (withAdvisoryLock's default, 30 s, when unset). */
  lockSessionTimeoutMs?: number;
}

export class TaskRunner {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly running = new Set<Promise<unknown>>();
  private readonly abort = new AbortController();
  private started = false;
  private schema: string | undefined;

  constructor(private readonly deps: TaskRunnerDeps) {}

  start(): void {
    if (this.started) return;
    this.started = true;
    for (const task of this.deps.tasks) this.schedule(task, Math.random() * Math.min(task.intervalMs, 1000));
  }

  /** Runs one task now under its lock; returns false when another process holds it. */
  async runOnce(task: RecurringTask): Promise<boolean> {
    const log = this.deps.log.child({ component: 'task', task: task.name });
    const t0 = performance.now();
    try {
      // The lock is per schema: several networks (or test schemas) may share one PostgreSQL server.
      this.schema ??= (await this.deps.pool.query<{ s: string }>('select current_schema() as s')).rows[0]!.s;
      const r = await withAdvisoryLock(
        this.deps.pool,
        `rty:task:${this.schema}:${task.name}`,
        (lockLost) => task.run(AbortSignal.any([this.abort.signal, lockLost])),
        this.deps.lockSessionTimeoutMs !== undefined
          ? { sessionTimeoutMs: this.deps.lockSessionTimeoutMs }
          : {},
      );
      if (r.ran) log.debug({ ms: Math.round(performance.now() - t0), result: r.value }, 'task ran');
      return r.ran;
    } catch (err) {
      // A store outage is expected and survivable: the next turn retries (and retakes the lock).
      if (isAppError(err, 'store_unavailable'))
        log.warn({ err: err.message }, 'task interrupted by a store outage');
      else log.error({ err }, 'task failed');
      return true;
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.running]);
  }

  private schedule(task: RecurringTask, delayMs: number): void {
    if (this.abort.signal.aborted) return;
    const timer = setTimeout(() => {
      const p = this.runOnce(task).finally(() => {
        this.running.delete(p);
        // ±10% jitter keeps processes from waking in lockstep.
        this.schedule(task, task.intervalMs * (0.9 + Math.random() * 0.2));
      });
      this.running.add(p);
    }, delayMs);
    timer.unref();
    this.timers.set(task.name, timer);
  }
}
