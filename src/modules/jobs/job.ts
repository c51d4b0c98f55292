// The job flow's port to the nodes: what a node reports for a job and who delivers it.
import type { Lease } from '../nodes/index.js';
import type { JobMessage, JobRequest } from '../routing/index.js';

/** What a node reports for a job it ran. */
export interface NodeResult {
  tokensIn: number;
  tokensOut: number;
  output: string;
  embeddings?: number[][];
  finishReason?: FinishReason;
  toolCalls?: ToolCall[];
  /** Per output token, when the request asked for `logprobs` (choice 0). */
  logprobs?: TokenLogprob[];
  /** Choices 1..n-1 when the request asked for `n > 1` (choice 0 is the fields above); usage covers them all. */
  choices?: NodeChoice[];
}

/** One more choice of an `n > 1` request: its own text, finish reason, tool calls and logprobs. */
export interface NodeChoice {
  output: string;
  finishReason?: FinishReason;
  toolCalls?: ToolCall[];
  logprobs?: TokenLogprob[];
}

/** An output token's log probability and, when `top_logprobs` was asked, the most likely alternatives. */
export interface TokenLogprob {
  token: string;
  logprob: number;
  top?: Array<{ token: string; logprob: number }>;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** Delivers a job to the node holding its lease and returns that node's verified result. */
export interface NodeExecutor {
  run(lease: Lease, job: JobMessage, signal: AbortSignal): Promise<NodeResult>;
}

/** How many choices a request asked for (`n`, default 1): its output budget is `maxTokens` per choice. */
export function choicesAsked(request: Pick<JobRequest, 'body'> | undefined): number {
  const n = request?.body.n;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 1 ? n : 1;
}
