// Turns job results into OpenAI-shaped response bodies (chat.completion, text_completion, embeddings list,
// streamed chunks: cloud.stream.ts) and failed jobs into catalogue errors.
import type { JobResult, JobRow } from '../../modules/jobs/index.js';
import { AppError } from '../../platform/errors.js';

const unix = (iso: string) => Math.floor(Date.parse(iso) / 1000);

export function usageOf(r: JobResult) {
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

type Output = NonNullable<JobResult['output']>;
type Choice = Pick<Output, 'text' | 'finishReason' | 'toolCalls' | 'logprobs'>;
type Logprobs = NonNullable<Output['logprobs']>;

/** Every choice of a result: choice 0 is the output itself, then those of an `n > 1` request. */
export function choicesOf(r: JobResult): Choice[] {
  return [r.output ?? {}, ...(r.output?.choices ?? [])];
}

const bytesOf = (token: string) => [...Buffer.from(token, 'utf8')];

/** Chat's `logprobs: { content: [...] }`, with `bytes` as OpenAI sends them. */
export function chatLogprobs(l: Logprobs | undefined) {
  if (!l) return null;
  return {
    content: l.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      bytes: bytesOf(t.token),
      top_logprobs: (t.top ?? []).map((x) => ({
        token: x.token,
        logprob: x.logprob,
        bytes: bytesOf(x.token),
      })),
    })),
    refusal: null,
  };
}

/** Legacy completions' parallel arrays (alternatives as `{ token: logprob }` maps). */
function completionLogprobs(l: Logprobs | undefined) {
  if (!l) return null;
  let offset = 0;
  const textOffset = l.map((t) => {
    const at = offset;
    offset += t.token.length;
    return at;
  });
  return {
    tokens: l.map((t) => t.token),
    token_logprobs: l.map((t) => t.logprob),
    top_logprobs: l.map((t) => Object.fromEntries((t.top ?? []).map((x) => [x.token, x.logprob]))),
    text_offset: textOffset,
  };
}

export function renderResult(r: JobResult, opts: { encodingFormat?: 'float' | 'base64' } = {}): unknown {
  switch (r.kind) {
    case 'chat':
      return {
        id: `chatcmpl-${r.jobId}`,
        object: 'chat.completion',
        created: unix(r.createdAt),
        model: r.model,
        choices: choicesOf(r).map((c, index) => ({
          index,
          message: {
            role: 'assistant',
            // With tool calls and no text, OpenAI sends content null.
            content: c.text || (c.toolCalls?.length ? null : ''),
            refusal: null,
            ...(c.toolCalls?.length ? { tool_calls: c.toolCalls } : {}),
          },
          logprobs: chatLogprobs(c.logprobs),
          finish_reason: c.finishReason ?? 'stop',
        })),
        usage: usageOf(r),
        system_fingerprint: r.nodeAddress ? `node:${r.nodeAddress}` : null,
      };
    case 'completion':
      return {
        id: `cmpl-${r.jobId}`,
        object: 'text_completion',
        created: unix(r.createdAt),
        model: r.model,
        choices: choicesOf(r).map((c, index) => ({
          index,
          text: c.text ?? '',
          logprobs: completionLogprobs(c.logprobs),
          finish_reason: c.finishReason ?? 'stop',
        })),
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
  row: Pick<
    JobRow,
    'id' | 'status' | 'model' | 'createdAt' | 'attempts' | 'cost' | 'maxCost' | 'priceVersion'
  >,
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
    // The network config version whose prices the job is reserved and charged at (null before price tables).
    price_version: row.priceVersion ?? result?.price?.version ?? null,
  };
  // A job cancelled while running shows the output it was charged for beside its error.
  if (result?.status === 'succeeded' || (result?.status === 'cancelled' && result.output))
    body.result = renderResult(result, encodingFormat ? { encodingFormat } : {});
  if (result && result.status !== 'succeeded') body.error = errorOfResult(result).toBody().error;
  return body;
}
