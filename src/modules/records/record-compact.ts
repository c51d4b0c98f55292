// The normal path's job document: built from one finished event that carries its submission (no separate
// submitted event, no lookup), with the error log a failed job keeps. Pure, no I/O.
import { buildJobDoc, dayOf, submittedIdOf, type JobDoc, type LogDoc } from './record.js';

/**
 * The normal path's job document, from one finished event carrying its submission: `finished` is that event
 * prepared as a log document (body storable, large strings moved out). Also the log document to keep when the
 * job did not succeed (an error log), without the submission (the job document has it).
 */
export function compactJobDoc(finished: LogDoc): { job: JobDoc; errorLog: LogDoc | null } {
  const { submitted: sub, ...body } = finished.body as Record<string, unknown> & {
    submitted: Record<string, unknown> & { at: string };
  };
  const { at, ...subBody } = sub;
  const ts = new Date(at);
  const submitted: LogDoc = {
    ...finished,
    _id: submittedIdOf(finished.ns, finished.jobId),
    type: 'job.submitted',
    logType: 'execution',
    ts,
    day: dayOf(ts),
    body: subBody,
    bytes: 0,
  };
  const f: LogDoc = { ...finished, body };
  const job = buildJobDoc(submitted, f);
  const b = body as { history?: unknown[]; code?: string; cause?: string };
  if (Array.isArray(b.history) && b.history.length > 0)
    job.routing.history = b.history as NonNullable<JobDoc['routing']['history']>;
  if (typeof b.code === 'string') job.code = b.code;
  if (typeof b.cause === 'string') job.cause = b.cause;
  return { job, errorLog: job.status === 'succeeded' ? null : f };
}
