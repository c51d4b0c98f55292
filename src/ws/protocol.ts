// WebSocket frames between the node gateway and nodes (zod, versioned `v: 1`), the bodies of the signed node
// messages sent over it, and the relay messages gateway processes exchange on Redis pub/sub.
import { z } from 'zod';
import { environments } from '../modules/nodes/index.js';
import { jobRequestSchema } from '../modules/routing/index.js';

export const WS_PROTOCOL_VERSION = 1;
export const NODE_WS_PATH = '/v1/nodes/ws';

const jobId = z.string().min(1).max(100);
const fencingToken = z.string().min(1).max(100);

// --- Node → server: the `body` of signed node messages (src/modules/network/node-message.ts) ---

export const helloBodySchema = z.object({
  environment: z.enum(environments),
  capacity: z.number().int().min(1).max(1024).optional(),
  models: z.array(z.string().max(128)).max(64).optional(),
  agent: z.string().max(64).optional(),
});
export type HelloBody = z.infer<typeof helloBodySchema>;

export const jobResultBodySchema = z.object({
  jobId,
  fencingToken,
  tokensIn: z.number().int().min(0).max(2_147_483_647),
  tokensOut: z.number().int().min(0).max(2_147_483_647),
  output: z.string(),
  embeddings: z.array(z.array(z.number())).optional(),
  finishReason: z.enum(['stop', 'length']).optional(),
});
export type JobResultBody = z.infer<typeof jobResultBodySchema>;

export const jobErrorBodySchema = z.object({
  jobId,
  fencingToken,
  reason: z.string().min(1).max(500),
});
export type JobErrorBody = z.infer<typeof jobErrorBodySchema>;

/** Signed message types a node sends on its socket. */
export const NODE_WS_TYPES = { hello: 'node.hello', result: 'job.result', error: 'job.error' } as const;

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
});
export type JobFrame = z.infer<typeof jobFrameSchema>;

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
  environment: z.enum(environments),
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
    result: jobResultBodySchema.omit({ jobId: true, fencingToken: true }),
  }),
  z.object({
    v: z.literal(WS_PROTOCOL_VERSION),
    type: z.literal('fail'),
    reqId: z.string(),
    reason: z.string(),
  }),
]);
export type RelayMessage = z.infer<typeof relayMessageSchema>;
