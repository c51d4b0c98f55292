// WebSocket frames between the node gateway and nodes (zod, versioned `v: 1`), the bodies of the signed node
// messages sent over it, and the relay messages gateway processes exchange on Redis pub/sub.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { environmentSchema } from '../../config/vocabulary.js';
import { jobRequestSchema } from '../routing/index.js';

export const WS_PROTOCOL_VERSION = 1;
export const NODE_WS_PATH = '/v1/nodes/ws';

const jobId = z.string().min(1).max(100);
const fencingToken = z.string().min(1).max(100);

// --- Node → server: the `body` of signed node messages (src/modules/network/node-message.ts) ---

export const helloBodySchema = z.object({
  environment: environmentSchema,
  capacity: z.number().int().min(1).max(1024).optional(),
  models: z.array(z.string().max(128)).max(64).optional(),
  agent: z.string().max(64).optional(),
});
export type HelloBody = z.infer<typeof helloBodySchema>;

export const FINISH_REASONS = ['stop', 'length', 'tool_calls', 'content_filter'] as const;

/** A complete tool call of a result (OpenAI's `message.tool_calls[]`). */
export const toolCallSchema = z.object({
  id: z.string().min(1).max(200),
  type: z.literal('function'),
  function: z.object({ name: z.string().min(1).max(200), arguments: z.string() }),
});

/** A fragment of a tool call in a delta (OpenAI's `delta.tool_calls[]`: id/name first, arguments in pieces). */
export const toolCallDeltaSchema = z.object({
  index: z.number().int().min(0).max(127),
  id: z.string().min(1).max(200).optional(),
  type: z.literal('function').optional(),
  function: z.object({ name: z.string().max(200).optional(), arguments: z.string().optional() }).optional(),
});
export type ToolCallDelta = z.infer<typeof toolCallDeltaSchema>;

/** An output token's log probability and its most likely alternatives (`top_logprobs`, at most 20). */
export const tokenLogprobSchema = z.object({
  token: z.string().max(1_000),
  logprob: z.number().max(0),
  top: z
    .array(z.object({ token: z.string().max(1_000), logprob: z.number().max(0) }))
    .max(20)
    .optional(),
});

/** Choices 1..n-1 of an `n > 1` request (choice 0 is the result's own output fields). */
const extraChoiceSchema = z.object({
  output: z.string(),
  finishReason: z.enum(FINISH_REASONS).optional(),
  toolCalls: z.array(toolCallSchema).max(128).optional(),
  logprobs: z.array(tokenLogprobSchema).max(1_000_000).optional(),
});

/** What a streamed result commits to: the number of deltas sent and the hash chain over them (streamChain). */
const streamCommitSchema = z.object({
  count: z.number().int().min(0).max(1_000_000),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
});

export const jobResultBodySchema = z.object({
  jobId,
  fencingToken,
  tokensIn: z.number().int().min(0).max(2_147_483_647),
  tokensOut: z.number().int().min(0).max(2_147_483_647),
  output: z.string(),
  embeddings: z.array(z.array(z.number())).optional(),
  finishReason: z.enum(FINISH_REASONS).optional(),
  toolCalls: z.array(toolCallSchema).max(128).optional(),
  logprobs: z.array(tokenLogprobSchema).max(1_000_000).optional(),
  choices: z.array(extraChoiceSchema).max(127).optional(),
  /** Required when the job frame said `stream: true`: the signature then covers every delta in order. */
  stream: streamCommitSchema.optional(),
  /** The node stopped at a `job.cancel`: the output and tokens are what it produced until then. */
  cancelled: z.literal(true).optional(),
});
export type JobResultBody = z.infer<typeof jobResultBodySchema>;

export const jobErrorBodySchema = z.object({
  jobId,
  fencingToken,
  reason: z.string().min(1).max(500),
});
export type JobErrorBody = z.infer<typeof jobErrorBodySchema>;

/** Message types a node sends on its socket (all signed but `job.delta`, which the result commits to). */
export const NODE_WS_TYPES = {
  hello: 'node.hello',
  result: 'job.result',
  error: 'job.error',
  delta: 'job.delta',
} as const;

/**
 * One streamed piece of a job's output, in order (`seq` from 0). Unsigned: the session is authenticated and
 * the signed result commits to the whole sequence, so a forged, dropped or reordered delta fails the job.
 */
export const jobDeltaFrameSchema = z.object({
  v: z.literal(WS_PROTOCOL_VERSION),
  type: z.literal('job.delta'),
  jobId,
  fencingToken,
  seq: z.number().int().min(0).max(1_000_000),
  text: z.string().max(65_536).optional(),
  toolCalls: z.array(toolCallDeltaSchema).max(128).optional(),
  /**
   * Output tokens in this piece (default 1): what a stream cut at a cancel bills per delivered delta (at most
   * the piece's bytes). Part of the hash chain when present.
   */
  tokens: z.number().int().min(0).max(65_536).optional(),
});
export type JobDeltaFrame = z.infer<typeof jobDeltaFrameSchema>;
export type StreamDelta = Pick<JobDeltaFrame, 'seq' | 'text' | 'toolCalls' | 'tokens'>;

export const STREAM_CHAIN_START = '0'.repeat(64);

/** The next link of a stream's hash chain: SHA-256(previous hex ‖ canonical JSON of the delta's content). */
export function streamChain(previous: string, d: StreamDelta): string {
  // Arrays in a fixed order: the same delta hashes the same whatever key order a JSON parser kept.
  const tools = (d.toolCalls ?? []).map((t) => [
    t.index,
    t.id ?? null,
    t.function?.name ?? null,
    t.function?.arguments ?? null,
  ]);
  return (
    createHash('sha256')
      .update(previous)
      // `tokens` joins the array only when sent, so agents that never send it hash as before.
      .update(
        JSON.stringify(
          d.tokens === undefined ? [d.seq, d.text ?? '', tools] : [d.seq, d.text ?? '', tools, d.tokens],
        ),
      )
      .digest('hex')
  );
}

// --- Server → node frames ---

export const helloOkFrameSchema = z.object({
  v: z.literal(WS_PROTOCOL_VERSION),
  type: z.literal('hello.ok'),
  node: z.string(),
  instance: z.string(),
  maxInFlight: z.number().int(),
});

export const jobFrameSchema = z.object({
  v: z.literal(WS_PROTOCOL_VERSION),
  type: z.literal('job'),
  jobId,
  fencingToken,
  model: z.string(),
  request: jobRequestSchema,
  /** Absolute epoch ms by which the result must arrive; later results are discarded. */
  deadlineMs: z.number().int(),
  /** Send `job.delta` frames as output is produced; the result then commits to them (`stream`). */
  stream: z.boolean().optional(),
});
export type JobFrame = z.infer<typeof jobFrameSchema>;

/**
 * Stop the job (its client left or cancelled it): the node stops its runtime and answers its signed
 * `job.result` with what it produced so far (`cancelled: true`, the stream commitment of the deltas it sent).
 */
export const jobCancelFrameSchema = z.object({
  v: z.literal(WS_PROTOCOL_VERSION),
  type: z.literal('job.cancel'),
  jobId,
  fencingToken,
});
export type JobCancelFrame = z.infer<typeof jobCancelFrameSchema>;

/** Reasons a gateway refuses a frame (also the label of `rty_node_messages_rejected_total`). */
export const REJECT_REASONS = [
  'malformed',
  'bad_signature',
  'stale_timestamp',
  'replayed_nonce',
  'hello_required',
  'wrong_node',
  'node_not_registered',
  'not_lease_holder',
  'unknown_type',
  'hello_budget',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export const errorFrameSchema = z.object({
  v: z.literal(WS_PROTOCOL_VERSION),
  type: z.literal('error'),
  reason: z.enum(REJECT_REASONS),
  message: z.string(),
  jobId: z.string().optional(),
});
export type ErrorFrame = z.infer<typeof errorFrameSchema>;

export const serverFrameSchema = z.discriminatedUnion('type', [
  helloOkFrameSchema,
  jobFrameSchema,
  jobCancelFrameSchema,
  errorFrameSchema,
]);
export type ServerFrame = z.infer<typeof serverFrameSchema>;

/** WebSocket close codes the gateway uses (4000–4999 are application codes). */
export const CLOSE = {
  goingAway: 1001,
  policy: 1008,
  unauthorized: 4001,
  notRegistered: 4003,
  replaced: 4009,
  helloTimeout: 4008,
} as const;

// --- Gateway ↔ gateway relay (Redis pub/sub on keys.gatewayChannel(instance)) ---

const leaseSchema = z.object({
  jobId,
  environment: environmentSchema,
  nodeAddress: z.string(),
  fencingToken,
  expiresAtMs: z.number(),
});

export const relayMessageSchema = z.discriminatedUnion('type', [
  z.object({
    v: z.literal(WS_PROTOCOL_VERSION),
    type: z.literal('deliver'),
    reqId: z.string(),
    replyTo: z.string(),
    lease: leaseSchema,
    /** The JobMessage (parsed again by the owner). */
    job: z.unknown(),
    deadlineMs: z.number().int(),
  }),
  z.object({
    v: z.literal(WS_PROTOCOL_VERSION),
    type: z.literal('result'),
    reqId: z.string(),
    result: jobResultBodySchema
      .omit({ jobId: true, fencingToken: true })
      .extend({ violation: z.string().max(1000).optional() }),
  }),

  z.object({
    v: z.literal(WS_PROTOCOL_VERSION),
    type: z.literal('fail'),
    reqId: z.string(),
    reason: z.string(),
  }),
]);
export type RelayMessage = z.infer<typeof relayMessageSchema>;

/** Broadcast to every gateway on keys.gatewayCancelChannel(): the one holding the job's delivery cuts it. */
export const relayCancelSchema = z.object({
  v: z.literal(WS_PROTOCOL_VERSION),
  type: z.literal('cancel'),
  jobId,
  /** Deltas the client received (0: nothing; absent: all the node produces until it stops). */
  delivered: z.number().int().min(0).optional(),
});
export type RelayCancel = z.infer<typeof relayCancelSchema>;
