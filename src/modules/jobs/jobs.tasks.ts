// The jobs module's recurring task for the background runner: finish job rows left 'queued'/'dispatched'
// whose credit hold was already closed without a charge (a submit that crashed between reserve and enqueue,
// a message lost before dispatch …): they become 'expired' with cost 0, once, with their result row and their
// record events (submitted and finished) like any closed job; and the prune of result rows past retention.
import type { Logger } from '../../platform/logger.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { JobRecordSink } from './job-records.js';
import { parseStoredResult } from './job-results.js';
import { recordEventsOf } from './jobs.recovery.js';
import { JobsRepository } from './jobs.repository.js';

export interface StaleJobsOptions {
  intervalMs: number;
  /**
   * Only holds closed longer ago than this: the job flow voids the hold first and moves the row right after,
   * and that path (with its own terminal status: failed, cancelled) must win over this repair.
   */
  graceMs: number;
  batchSize: number;
}

export interface StaleJobsTask {
  name: string;
  intervalMs: number;
  run(signal: AbortSignal): Promise<{ expired: number }>;
}

export function createStaleJobsTask(deps: {
  pool: Pool;
  log: Logger;
  records?: JobRecordSink;
  options: StaleJobsOptions;
}): StaleJobsTask {
  const repo = new JobsRepository();
  const log = deps.log.child({ component: 'jobs.stale-reconcile' });
  return {
    name: 'jobs.stale-reconcile',
    intervalMs: deps.options.intervalMs,
    run: async (signal) => {
      let expired = 0;
      // Bounded: at most 100 batches per run; the next run takes the rest.
      for (let i = 0; i < 100 && !signal.aborted; i += 1) {
        const moved = await repo.expireJobsWithClosedHolds(
          deps.pool,
          new Date(Date.now() - deps.options.graceMs),
          deps.options.batchSize,
        );
        expired += moved.length;
        if (moved.length > 0) {
          const results = moved.map(parseStoredResult).filter((r) => r !== undefined);
          log.info({ jobs: results.map((r) => r.jobId) }, 'stale jobs with closed holds expired');
          if (deps.records) await emitClosed(deps.records, repo, deps.pool, moved, log);
        }
        if (moved.length < deps.options.batchSize) break;
      }
      return { expired };
    },
  };
}

export interface ResultRetentionTask {
  name: string;
  intervalMs: number;
  run(signal: AbortSignal): Promise<{ pruned: number }>;
}

/**
 * Deletes job result rows past their namespace's retention (GET /v1/jobs/:id answers 410 result_expired for
 * them from the moment retention passes, so the prune only frees the space). Bounded per run.
 */
export function createResultRetentionTask(deps: {
  pool: Pool;
  log: Logger;
  options: { intervalMs: number; batchSize: number };
}): ResultRetentionTask {
  const repo = new JobsRepository();
  const log = deps.log.child({ component: 'jobs.prune-results' });
  return {
    name: 'jobs.prune-results',
    intervalMs: deps.options.intervalMs,
    run: async (signal) => {
      let pruned = 0;
      for (let i = 0; i < 100 && !signal.aborted; i += 1) {
        const n = await repo.pruneExpiredResults(deps.pool, deps.options.batchSize);
        pruned += n;
        if (n < deps.options.batchSize) break;
      }
      if (pruned > 0) log.info({ pruned }, 'job results past retention deleted');
      return { pruned };
    },
  };
}

/** Sends the record events of closed jobs' stored results, then marks them recorded (the outbox flag). */
async function emitClosed(
  records: JobRecordSink,
  repo: JobsRepository,
  pool: Pool,
  stored: unknown[],
  log: Logger,
): Promise<void> {
  const { events, ids } = recordEventsOf(stored);
  try {
    await records.publish(events);
    await repo.markRecorded(pool, ids);
  } catch (err) {
    // Left unrecorded: the recovery task re-sends them from the result rows.
    log.warn({ err }, 'record events not published');
  }
}
