// Pure routing rules: which lane a job goes to, when it expires, and what a failure leads to (retry tier or
// quarantine), using our own attempt counter.
import type { LaneKey } from '../../stores/rabbitmq/topology.js';
import type { Failure, JobMessage } from './routing.contracts.js';

export interface RetryPolicy {
  /** Total attempts allowed (the first run included). */
  maxAttempts: number;
  /** Increasing delays; attempt n (1-based) that failed waits delays[min(n, len) - 1]. */
  retryDelaysMs: readonly number[];
}

export function laneKeyOf(
  job: Pick<JobMessage, 'environment' | 'model' | 'priority' | 'subcloud' | 'namespaceId'>,
): LaneKey {
  return {
    environment: job.environment,
    model: job.model,
    priority: job.priority,
    subcloud: job.subcloud ?? '_',
    namespaceId: job.namespaceId,
  };
}

export function deadlineOf(job: Pick<JobMessage, 'enqueuedAt' | 'ttlMs'>): number {
  return Date.parse(job.enqueuedAt) + job.ttlMs;
}

export function isExpired(job: Pick<JobMessage, 'enqueuedAt' | 'ttlMs'>, now: Date): boolean {
  return now.getTime() >= deadlineOf(job);
}

/** Per-message expiration for the broker: what is left of the TTL, at least 1 ms. */
export function remainingTtlMs(job: Pick<JobMessage, 'enqueuedAt' | 'ttlMs'>, now: Date): number {
  return Math.max(1, deadlineOf(job) - now.getTime());
}

export type FailureDecision =
  | { kind: 'retry'; delayMs: number; next: JobMessage }
  | { kind: 'quarantine'; next: JobMessage };

/** A failed attempt: record it, exclude the node, then back off through a retry tier or quarantine. */
export function decideFailure(
  job: JobMessage,
  failure: { reason: string; nodeId?: string | undefined; cause?: Failure['cause'] },
  policy: RetryPolicy,
  now: Date,
): FailureDecision {
  const attempt = job.attempt + 1;
  const entry: Failure = {
    attempt,
    reason: failure.reason.slice(0, 500),
    at: now.toISOString(),
    ...(failure.nodeId ? { nodeId: failure.nodeId } : {}),
    ...(failure.cause ? { cause: failure.cause } : {}),
  };
  // A node is excluded from the retries only for a failure of its own (a cause of ours leaves it eligible).
  const nodeCaused = !failure.cause || failure.cause.startsWith('node_');
  const excluded =
    nodeCaused && failure.nodeId && !job.excludedNodeIds.includes(failure.nodeId)
      ? [...job.excludedNodeIds, failure.nodeId]
      : job.excludedNodeIds;
  // Bounded lists: the message stays small however often it is retried (contract max 100).
  const next: JobMessage = {
    ...job,
    attempt,
    excludedNodeIds: excluded.slice(-100),
    failures: [...job.failures, entry].slice(-100),
  };
  if (attempt >= policy.maxAttempts || policy.retryDelaysMs.length === 0) return { kind: 'quarantine', next };
  const tier = Math.min(attempt, policy.retryDelaysMs.length) - 1;
  return { kind: 'retry', delayMs: policy.retryDelaysMs[tier]!, next };
}

/** A job replayed from quarantine starts over: attempts and exclusions reset, history kept, a fresh TTL. */
export function replayedJob(job: JobMessage, now: Date): JobMessage {
  return { ...job, attempt: 0, excludedNodeIds: [], enqueuedAt: now.toISOString() };
}

export function parseRetryDelays(spec: string): number[] {
  const delays = spec.split(',').map((s) => Number(s.trim()));
  if (delays.some((d) => !Number.isInteger(d) || d <= 0))
    throw new Error(`retry delays must be positive integers: ${spec}`);
  for (let i = 1; i < delays.length; i += 1)
    if (delays[i]! <= delays[i - 1]!) throw new Error(`retry delays must increase: ${spec}`);
  return delays;
}
