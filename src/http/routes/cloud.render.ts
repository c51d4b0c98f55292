// Turns job results into OpenAI-shaped response bodies (chat.completion, text_completion, embeddings list,
// streamed chunks: cloud.stream.ts) and failed jobs into catalogue errors.
import type { JobResult, JobRow } from '../../modules/jobs/index.js';
import { AppError } from '../../platform/errors.js';

const unix = (iso: string) => Math.floor(Date.parse(iso) / 1000);

function usageOf(r: JobResult) {
  const p = r.usage?.promptTokens ?? 0;
  const c = r.usage?.completionTokens ?? 0;
  return { prompt_tokens: p, completion_tokens: c, total_tokens: p + c };
}

/** The error a client gets for a job that did not succeed. */
export function errorOfResult(
  r: Pick<JobResult, 'status' | 'error' | 'errorCode' | 'jobId' | 'output'>,
): AppError {
  const details = { jobId: r.jobId };
  switch (r.status) {
    case 'failed':
      return r.errorCode === 'no_capacity'
        ? new AppError('no_capacity', `no node could take job ${r.jobId}; it was refunded`, details)
        : new AppError(
            'job_failed',
            `job ${r.jobId} failed on every attempt and was refunded: ${r.error ?? ''}`,
            details,
          );
    case 'expired':
      return new AppError('timeout', `job ${r.jobId} expired before a node ran it; it was refunded`, details);
    case 'cancelled':
      // Cancelled while running: charged for what was delivered (its error text says how much).
      return r.output
        ? new AppError('job_cancelled', `job ${r.jobId} was ${r.error ?? 'cancelled'}`, details)
        : new AppError(
            'timeout',
            `job ${r.jobId} was cancelled (${r.error ?? 'cancelled'}); it was refunded`,
            details,
          );
    default:
      return new AppError('internal', `job ${r.jobId} has no error`, details);
  }
}

export function renderResult(r: JobResult, opts: { encodingFormat?: 'float' | 'base64' } = {}): unknown {
  switch (r.kind) {
    case 'chat':
      return {
        id: `chatcmpl-${r.jobId}`,
        object: 'chat.completion',
        created: unix(r.createdAt),
        model: r.model,
        choices: [
          {
            index: 0,
            message: {
              role: 'assistant',
              // With tool calls and no text, OpenAI sends content null.
              content: r.output?.text || (r.output?.toolCalls?.length ? null : ''),
              refusal: null,
              ...(r.output?.toolCalls?.length ? { tool_calls: r.output.toolCalls } : {}),
            },
            logprobs: null,
            finish_reason: r.output?.finishReason ?? 'stop',
          },
        ],
        usage: usageOf(r),
        system_fingerprint: r.nodeAddress ? `node:${r.nodeAddress}` : null,
      };
    case 'completion':
      return {
        id: `cmpl-${r.jobId}`,
        object: 'text_completion',
        created: unix(r.createdAt),
        model: r.model,
        choices: [
          {
            index: 0,
            text: r.output?.text ?? '',
            logprobs: null,
            finish_reason: r.output?.finishReason ?? 'stop',
          },
        ],
        usage: usageOf(r),
      };
    case 'embedding':
      return {
        object: 'list',
        model: r.model,
        data: (r.output?.embeddings ?? []).map((v, index) => ({
          object: 'embedding',
          index,
          embedding:
            opts.encodingFormat === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v,
        })),
        usage: { prompt_tokens: r.usage?.promptTokens ?? 0, total_tokens: r.usage?.promptTokens ?? 0 },
      };
  }
}

/** The polling view of a job. */
export function renderJob(
  row: Pick<JobRow, 'id' | 'status' | 'model' | 'createdAt' | 'attempts' | 'cost' | 'maxCost'>,
  result: JobResult | undefined,
  encodingFormat?: 'float' | 'base64',
): unknown {
  const body: Record<string, unknown> = {
    id: row.id,
    object: 'job',
    // A stored result is final (its ledger outcome committed first); the row may lag it by a moment.
    status: result?.status ?? row.status,
    model: row.model,
    created: Math.floor(row.createdAt.getTime() / 1000),
    attempts: row.attempts,
    cost_micro: row.cost?.toString() ?? null,
    max_cost_micro: row.maxCost.toString(),
  };
  // A job cancelled while running shows the output it was charged for beside its error.
  if (result?.status === 'succeeded' || (result?.status === 'cancelled' && result.output))
    body.result = renderResult(result, encodingFormat ? { encodingFormat } : {});
  if (result && result.status !== 'succeeded') body.error = errorOfResult(result).toBody().error;
  return body;
}
