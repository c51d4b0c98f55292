// The job flow's port to the nodes: what a node reports for a job and who delivers it.
import type { Lease } from '../nodes/index.js';
import type { JobMessage } from '../routing/index.js';

/** What a node reports for a job it ran. */
export interface NodeResult {
  tokensIn: number;
  tokensOut: number;
  output: string;
  embeddings?: number[][];
  finishReason?: FinishReason;
  toolCalls?: ToolCall[];
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
