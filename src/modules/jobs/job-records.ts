// Builds the records-contract events the job flow emits for MongoDB (normally one job.finished per job carrying
// its submission and routing history; job.fallback per failed attempt), and the sink they go to (RabbitMQ in a
// backbone; the recorder consumes them in batches).
import type { PriorityClass } from '../../config/vocabulary.js';
import type { RecordEventInput } from '../records/index.js';
import type { JobMessage } from '../routing/index.js';
import type { JobResult } from './job-results.js';

/** Where the job flow hands its record events; a failure here is logged, never fails a job. */
export interface JobRecordSink {
  publish(events: RecordEventInput[]): Promise<void>;
}

function inputOf(job: Pick<JobMessage, 'request'>): {
  prompt?: string;
  messages?: Array<{ role: string; content: string }>;
  params: Record<string, unknown>;
} {
  const body = job.request?.body ?? {};
  const { prompt, messages, input, ...params } = body;
  const out: ReturnType<typeof inputOf> = { params };
  if (typeof prompt === 'string') out.prompt = prompt;
  if (Array.isArray(prompt)) out.prompt = prompt.map(String).join('\n');
  if (typeof input === 'string') out.prompt = input;
  if (Array.isArray(input)) out.prompt = input.map(String).join('\n');
  if (Array.isArray(messages))
    out.messages = messages.map((m: { role?: unknown; content?: unknown }) => ({
      role: String(m.role ?? ''),
      content: typeof m.content === 'string' ? m.content : JSON.stringify(m.content ?? ''),
    }));
  return out;
}

export function fallbackEvent(job: JobMessage, nodeAddress: string, reason: string): RecordEventInput {
  return {
    version: 1,
    type: 'job.fallback',
    namespaceId: job.namespaceId,
    jobId: job.jobId,
    at: new Date().toISOString(),
    model: job.model,
    attempt: job.attempt + 1,
    nodeAddress,
    reason: reason.slice(0, 500) || 'failed',
  };
}

/** What the finished event carries of the submission (so no job.submitted event is needed). */
export interface Submission {
  at: string;
  apiKeyId: string | null;
  priority: PriorityClass;
  request?: JobMessage['request'];
  failures?: JobMessage['failures'];
}

/** The submission of a job from its message (the request rides in it). */
export function submissionOf(job: JobMessage, apiKeyId: string | null, at: string): Submission {
  return { at, apiKeyId, priority: job.priority, request: job.request, failures: job.failures };
}

export function finishedEvent(
  r: JobResult,
  timing: { assignedAt: Date | null; executionMs: number },
  submission?: Submission,
): RecordEventInput {
  const latencyMs = Math.max(0, Date.parse(r.finishedAt) - Date.parse(r.createdAt));
  const text =
    r.output?.text ??
    (r.output?.embeddings
      ? `[${r.output.embeddings.length} embeddings of ${r.output.embeddings[0]?.length ?? 0} dimensions]`
      : '');
  return {
    version: 1,
    type: 'job.finished',
    namespaceId: r.namespaceId,
    jobId: r.jobId,
    at: r.finishedAt,
    model: r.model,
    status: r.status,
    nodeAddress: r.nodeAddress,
    assignedAt: timing.assignedAt?.toISOString() ?? null,
    attempts: r.attempts,
    // A job cancelled while running keeps the output it was charged for in its document too.
    output:
      r.status === 'succeeded' || r.usage !== undefined
        ? {
            text,
            tokensIn: r.usage?.promptTokens ?? 0,
            tokensOut: r.usage?.completionTokens ?? 0,
            finishReason: r.output?.finishReason ?? 'stop',
          }
        : null,
    error: r.error?.slice(0, 2000) ?? null,
    metrics: {
      queueMs: timing.assignedAt ? Math.max(0, timing.assignedAt.getTime() - Date.parse(r.createdAt)) : 0,
      executionMs: Math.max(0, Math.round(timing.executionMs)),
      latencyMs,
      retries: Math.max(0, r.attempts - 1),
    },
    costMicro: r.costMicro,
    ...(r.price ? { price: r.price } : {}),
    ...(r.errorCode ? { code: r.errorCode } : {}),
    ...(r.cause ? { cause: r.cause } : {}),
    ...(submission
      ? {
          submitted: {
            at: submission.at,
            apiKeyId: submission.apiKeyId,
            priority: submission.priority,
            input: inputOf({ request: submission.request }),
          },
          ...(submission.failures && submission.failures.length > 0
            ? {
                history: submission.failures.slice(-100).map((f) => ({
                  attempt: f.attempt,
                  nodeAddress: f.nodeId ?? null,
                  reason: f.reason.slice(0, 500) || 'failed',
                  ...(f.cause ? { cause: f.cause } : {}),
                })),
              }
            : {}),
        }
      : {}),
  };
}
