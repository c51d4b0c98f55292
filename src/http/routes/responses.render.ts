// Responses API bodies: the `response` object (non-streamed answer, and the snapshot the stream's created and
// completed events carry) built from a job result, with ids derived from the job id so a stream and its final
// snapshot name the same items.
import type { JobResult } from '../../modules/jobs/index.js';
import { chatLogprobs } from './cloud.render.js';
import type { ResponsesBody } from './responses.contracts.js';

const compact = (jobId: string) => jobId.replaceAll('-', '');
export const responseId = (jobId: string) => `resp_${compact(jobId)}`;
export const messageId = (jobId: string) => `msg_${compact(jobId)}`;
export const functionCallId = (jobId: string, index: number) => `fc_${compact(jobId)}_${index}`;

export type MessageItem = {
  type: 'message';
  id: string;
  status: 'in_progress' | 'completed' | 'incomplete';
  role: 'assistant';
  content: OutputText[];
};
export type OutputText = { type: 'output_text'; text: string; annotations: []; logprobs: unknown[] };
export type FunctionCallItem = {
  type: 'function_call';
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  status: 'in_progress' | 'completed' | 'incomplete';
};
export type OutputItem = MessageItem | FunctionCallItem;

/** The request fields a response echoes back. */
export function echoOf(body: ResponsesBody) {
  return {
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model: body.model,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    temperature: body.temperature ?? 1,
    text: { format: body.text?.format ?? { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: (body.tools ?? []).map((t) => ({
      type: 'function',
      name: t.name,
      description: t.description ?? null,
      parameters: t.parameters ?? null,
      strict: t.strict ?? true,
    })),
    top_p: body.top_p ?? 1,
    top_logprobs: body.top_logprobs ?? 0,
    user: body.user ?? null,
    metadata: body.metadata ?? {},
    service_tier: body.service_tier ?? 'default',
  };
}
export type Echo = ReturnType<typeof echoOf>;

/** Status and incomplete_details of a finished job's response (OpenAI: max_output_tokens, content_filter). */
function outcomeOf(r: JobResult) {
  const finish = r.output?.finishReason;
  if (finish === 'length')
    return { status: 'incomplete' as const, incomplete_details: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter')
    return { status: 'incomplete' as const, incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed' as const, incomplete_details: null };
}

/** A response object: `in_progress` with no output (stream start), or final with its items and usage. */
export function responseObject(
  jobId: string,
  createdAt: Date | string,
  echo: Echo,
  final?: { result: JobResult; output: OutputItem[] },
) {
  const p = final?.result.usage?.promptTokens ?? 0;
  const c = final?.result.usage?.completionTokens ?? 0;
  return {
    id: responseId(jobId),
    object: 'response',
    created_at: Math.floor(new Date(createdAt).getTime() / 1000),
    ...(final ? outcomeOf(final.result) : { status: 'in_progress' as const, incomplete_details: null }),
    error: null,
    output: final?.output ?? [],
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    truncation: 'disabled',
    usage: final
      ? {
          input_tokens: p,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: c,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: p + c,
        }
      : null,
    ...echo,
  };
}

/** The output items of a finished job: its text as one message (when any, or when nothing else), then calls. */
export function outputOf(r: JobResult): OutputItem[] {
  const status = outcomeOf(r).status;
  const items: OutputItem[] = [];
  const text = r.output?.text ?? '';
  const calls = r.output?.toolCalls ?? [];
  if (text || calls.length === 0)
    items.push({
      type: 'message',
      id: messageId(r.jobId),
      status,
      role: 'assistant',
      content: [
        {
          type: 'output_text',
          text,
          annotations: [],
          logprobs: chatLogprobs(r.output?.logprobs)?.content ?? [],
        },
      ],
    });
  calls.forEach((call, i) =>
    items.push({
      type: 'function_call',
      id: functionCallId(r.jobId, i),
      call_id: call.id,
      name: call.function.name,
      arguments: call.function.arguments,
      status: 'completed',
    }),
  );
  return items;
}

/** The non-streamed answer. */
export function renderResponse(r: JobResult, echo: Echo): unknown {
  return responseObject(r.jobId, r.createdAt, echo, { result: r, output: outputOf(r) });
}
