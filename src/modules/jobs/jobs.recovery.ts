// Crash recovery of the job path within seconds, as a task for the background runner: a job whose submit
// transaction committed but whose message the broker never confirmed (the process died in between) is
// refunded; a closed job whose record events were never confirmed has them re-emitted (submitted too: the
// recorder keeps the first copy of each event, so a re-emitted one changes nothing when the original arrived).
import { DEFAULT_PRIORITY_CLASS, isPriorityClass, type PriorityClass } from '../../config/vocabulary.js';
import type { Logger } from '../../platform/logger.js';
import type { RecordEventInput } from '../records/index.js';
import type { Pool } from '../../stores/postgres/pool.js';
import { finishedEvent, type JobRecordSink } from './job-records.js';
import { parseStoredResult } from './job-results.js';
import type { JobsService } from './jobs.service.js';
import { JobsRepository } from './jobs.repository.js';

export interface RecentJobsOptions {
  intervalMs: number;
  /** Younger than this, a job may still be publishing (or its events still confirming): left alone. */
  graceMs: number;
  /** Older unpublished jobs are the stale-jobs reconciler's (the partition range this task scans). */
  windowMs: number;
  batchSize: number;
}

export interface RecentJobsTask {
  name: string;
  intervalMs: number;
  run(signal: AbortSignal): Promise<{ refunded: number; reemitted: number }>;
}

export function createRecentJobsTask(deps: {
  pool: Pool;
  jobs: JobsService;
  log: Logger;
  records?: JobRecordSink;
  /**
   * How long this process has had the broker without a break. A job stays unconfirmed for as long as the
   * broker is down while its submitter, alive, keeps it to republish: it is refunded only once the broker has
   * been back for graceMs here (every live submitter has reconnected and republished by then).
   */
  brokerUpForMs?: () => number;
  options: RecentJobsOptions;
}): RecentJobsTask {
  const repo = new JobsRepository();
  const log = deps.log.child({ component: 'jobs.recover-recent' });
  const o = deps.options;
  return {
    name: 'jobs.recover-recent',
    intervalMs: o.intervalMs,
    run: async (signal) => {
      const now = Date.now();
      let refunded = 0;
      const brokerSettled = !deps.brokerUpForMs || deps.brokerUpForMs() >= o.graceMs;
      const lost = !brokerSettled
        ? []
        : await repo.findUnpublished(
            deps.pool,
            new Date(now - o.windowMs),
            new Date(now - o.graceMs),
            o.batchSize,
          );
      for (const j of lost) {
        if (signal.aborted) break;
        // The request body is not in PostgreSQL, so the job cannot be re-sent: refund it (the client lost its
        // connection with the process that died; a poller sees a clear failure, not a job stuck in 'queued').
        const ref = {
          namespaceId: j.namespaceId,
          jobId: j.id,
          model: j.model,
          attempt: 0,
          createdAt: j.createdAt,
          apiKeyId: j.apiKeyId,
          // No input in PostgreSQL: its finished event carries a submission without one.
        };
        const closed = await deps.jobs.close(ref, {
          status: 'failed',
          code: 'submit_interrupted',
          reason: 'the job was not enqueued before its process stopped',
        });
        if (closed.closed) refunded += 1;
      }
      if (refunded > 0)
        log.warn({ refunded }, 'jobs lost between their submit commit and their enqueue refunded');
      let reemitted = 0;
      if (deps.records && !signal.aborted) {
        const rows = await repo.findUnrecorded(deps.pool, new Date(now - o.graceMs), o.batchSize);
        const { events, ids } = recordEventsOf(rows);
        if (ids.length > 0) {
          await deps.records.publish(events);
          await repo.markRecorded(deps.pool, ids);
          reemitted = ids.length;
          log.info({ reemitted }, 'record events of closed jobs re-emitted');
        }
      }
      return { refunded, reemitted };
    },
  };
}

/**
 * The record events (a submitted rebuilt from PostgreSQL, and the finished) of stored result rows, and the job
 * ids they cover (rows not matching the result schema are skipped).
 */
export function recordEventsOf(rows: unknown[]): { events: RecordEventInput[]; ids: string[] } {
  const events: RecordEventInput[] = [];
  const ids: string[] = [];
  for (const raw of rows) {
    const r = parseStoredResult(raw);
    if (!r) continue;
    const rec =
      (
        raw as {
          record?: {
            apiKeyId?: string | null;
            priority?: string;
            assignedAt?: string | null;
            executionMs?: number;
          };
        }
      ).record ?? {};
    const priority = isPriorityClass(rec.priority) ? rec.priority : DEFAULT_PRIORITY_CLASS;
    events.push(
      minimalSubmitted(r.namespaceId, r.jobId, r.model, r.createdAt, rec.apiKeyId ?? null, priority),
      finishedEvent(r, {
        assignedAt: rec.assignedAt ? new Date(rec.assignedAt) : null,
        executionMs: rec.executionMs ?? 0,
      }),
    );
    ids.push(r.jobId);
  }
  return { events, ids };
}

/** A submitted event rebuilt from PostgreSQL alone (the input is not kept there). */
function minimalSubmitted(
  namespaceId: string,
  jobId: string,
  model: string,
  at: string,
  apiKeyId: string | null,
  priority: PriorityClass,
): RecordEventInput {
  return {
    version: 1,
    type: 'job.submitted',
    namespaceId,
    jobId,
    at,
    model,
    apiKeyId,
    priority,
    input: { params: {} },
  };
}
