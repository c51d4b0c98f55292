// What an Idempotency-Key replay is answered with: the first job as it is now. A finished job whose output is
// gone (its result row past the namespace's retention or pruned, or its job row rolled up and pruned) is a
// clear 410 result_expired at once: never a wait out to the sync timeout, a 5xx, or a second run.
import type { JobResult, JobRow, JobsService } from '../../modules/jobs/index.js';
import { AppError } from '../../platform/errors.js';
import { errorOfResult } from './cloud.render.js';

export interface ReplayedJob {
  row: JobRow;
  /** Set when the job has finished and its result is still kept. */
  result?: JobResult;
}

/** The replayed job; throws 410 result_expired when it finished and its output is no longer kept. */
export async function findReplayedJob(
  jobs: Pick<JobsService, 'getJob'>,
  namespaceId: string,
  jobId: string,
): Promise<ReplayedJob> {
  const found = await jobs.getJob(namespaceId, jobId);
  // The key's reservation exists (that is what made this a replay), so a missing row was rolled up and pruned.
  if (!found || found.resultExpired)
    throw new AppError(
      'result_expired',
      `the job of this Idempotency-Key (${jobId}) ${found ? 'succeeded' : 'finished'}, but its output is past this namespace's retention period and was deleted; send the request with a new Idempotency-Key to run it again`,
      { jobId },
    );
  return found.result ? { row: found.row, result: found.result } : { row: found.row };
}

/**
 * A sync replay's answer without waiting: the stored result, or for a finished job without one (a failed,
 * expired or cancelled job whose details are gone) the error of its status; undefined while the job runs.
 */
export async function replayedResult(
  jobs: Pick<JobsService, 'getJob'>,
  namespaceId: string,
  jobId: string,
): Promise<JobResult | undefined> {
  const { row, result } = await findReplayedJob(jobs, namespaceId, jobId);
  if (result || row.status === 'queued' || row.status === 'dispatched') return result;
  throw errorOfResult({ status: row.status, jobId });
}
