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
  /**
   * Set by the gateway (never taken from the node) when the job was cut at a cancel: the output and output
   * tokens are then what reached the client, and the job ends cancelled, charged for them.
   */
  cancelled?: true;
  /** Set by the gateway or the usage bounds: the node broke a rule (over-claimed, ignored a cancel) and is penalized. */
  violation?: string;
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
  /**
   * Tells the node running the job (here or on another process) to stop: its delivery then resolves with the
   * part of the output that was `delivered` (a count of streamed deltas; 0: none; absent: all it produced).
   */
  cancel?(jobId: string, delivered?: number): Promise<void>;
}

/** How many choices a request asked for (`n`, default 1): its output budget is `maxTokens` per choice. */
export function choicesAsked(request: Pick<JobRequest, 'body'> | undefined): number {
  const n = request?.body.n;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 1 ? n : 1;
}
