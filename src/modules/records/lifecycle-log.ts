// The routing layer's job lifecycle events (`job.<type>` on the events exchange: retry scheduled, quarantined,
// expired, completed …) as records-contract log events, so the recorder keeps them as routing/error logs and
// their queue (rty.events.recorder) is drained instead of growing without a reader.
import { decodeEvent, type JobEvent } from '../routing/index.js';
import type { RecordEventInput } from './records.contracts.js';

const ERROR_TYPES = new Set<JobEvent['type']>(['quarantined', 'expired', 'failed']);

export function lifecycleLogEvent(e: JobEvent): RecordEventInput {
  const level = ERROR_TYPES.has(e.type) ? 'error' : e.type === 'retry_scheduled' ? 'warn' : 'info';
  return {
    version: 1,
    type: 'log',
    // The routing event id is unique per event: a redelivery maps to the same document.
    eventId: `routing:${e.eventId}`,
    namespaceId: e.namespaceId,
    jobId: e.jobId,
    at: e.at,
    model: e.model,
    logType: ERROR_TYPES.has(e.type) ? 'error' : 'routing',
    level,
    message: e.reason ? `job ${e.type}: ${e.reason}` : `job ${e.type}`,
    data: {
      event: e.type,
      attempt: e.attempt,
      environment: e.environment,
      ...(e.nodeId ? { nodeId: e.nodeId } : {}),
    },
  };
}

/** Parses a lifecycle event message into its log event; a reason when it breaks the routing contract. */
export function decodeLifecycleLog(body: Buffer): { event: RecordEventInput } | { error: string } {
  const e = decodeEvent(body);
  return e
    ? { event: lifecycleLogEvent(e) }
    : { error: 'message breaks the job event contract (routing v1)' };
}
