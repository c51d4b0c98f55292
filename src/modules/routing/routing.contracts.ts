// AMQP message contracts of the routing layer (zod, versioned): the job message and the job event.
// A job message carries the request itself (bounded by HTTP_BODY_LIMIT_BYTES): dispatch must not depend on
// MongoDB (an outage there delays records, never inference). Outputs live in Redis/MongoDB, money in PostgreSQL.
import { z } from 'zod';
import { environmentSchema, priorityClassSchema, uuidSchema as uuid } from '../../config/vocabulary.js';

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$/, 'a model/Subcloud name');

/**
 * Why an attempt failed. Only the node_* causes are the node's fault (they penalize and exclude it); the
 * others are ours or the network's and leave the node's standing alone.
 */
export const ATTEMPT_CAUSES = [
  'node_error',
  'node_timeout',
  'node_disconnect',
  'backbone_unreachable',
  'backbone_shutdown',
  'store_error',
  'no_capacity',
] as const;
export type AttemptCause = (typeof ATTEMPT_CAUSES)[number];

export const failureSchema = z.object({
  attempt: z.number().int().min(1),
  reason: z.string().min(1).max(500),
  /** Absent on messages from before causes were recorded. */
  cause: z.enum(ATTEMPT_CAUSES).optional(),
  nodeId: z.string().max(100).optional(),
  at: z.string().datetime(),
});
export type Failure = z.infer<typeof failureSchema>;

export const JOB_MESSAGE_VERSION = 1;

export const REQUEST_KINDS = ['chat', 'completion', 'embedding'] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

/** What the node runs: the OpenAI-compatible body as the Cloud API validated it. */
export const jobRequestSchema = z.object({
  kind: z.enum(REQUEST_KINDS),
  body: z.record(z.string(), z.unknown()),
  /** The output budget the reservation was sized for. */
  maxTokens: z.number().int().min(1),
});
export type JobRequest = z.infer<typeof jobRequestSchema>;

/** The most micro-credits per 1,000 tokens a price may be (2^31 tokens at this price still fit a bigint). */
export const MAX_PRICE_MICRO_PER_1K = 1_000_000_000_000;
const pricePer1k = z.number().int().min(0).max(MAX_PRICE_MICRO_PER_1K);

/**
 * What a job pays per token, fixed at submit: the network config version whose price table priced it (0: no
 * config was published) and that table's input and output prices for its model, in micro-credits per 1,000
 * tokens. Dispatch settles from this alone, whatever the table says by then.
 */
export const jobPriceSchema = z.object({
  version: z.number().int().min(0),
  inputMicroPer1kTokens: pricePer1k,
  outputMicroPer1kTokens: pricePer1k,
});
export type JobPrice = z.infer<typeof jobPriceSchema>;

export const jobMessageSchema = z.object({
  v: z.literal(JOB_MESSAGE_VERSION),
  jobId: uuid,
  namespaceId: uuid,
  model: name,
  environment: environmentSchema,
  priority: priorityClassSchema,
  /** Null: any eligible node; otherwise only members of this Subcloud. */
  subcloud: name.nullable(),
  /** Attempts already made (our own counter; broker delivery counts are not used). */
  attempt: z.number().int().min(0),
  excludedNodeIds: z.array(z.string().max(100)).max(100),
  failures: z.array(failureSchema).max(100),
  enqueuedAt: z.string().datetime(),
  /** Time to live from enqueuedAt; past it the job is expired (and refunded), never run. */
  ttlMs: z.number().int().min(1),
  /** Absent only on messages from before requests rode along (and in routing tests). */
  request: jobRequestSchema.optional(),
  /**
   * What dispatch needs so that it reads nothing from PostgreSQL: the reserved amount (micro-credits, decimal)
   * and the job row's created_at (its partition key). Absent on messages from before they rode along: dispatch
   * then reads the row and hold once.
   */
  holdMicro: z
    .string()
    .regex(/^\d{1,19}$/)
    .optional(),
  createdAt: z.string().datetime().optional(),
  /** The submitting API key (for the job's records when they are rebuilt from the message). */
  apiKeyId: uuid.optional(),
  /** The job's price (see jobPriceSchema); absent on messages from before per-model prices: the flat price. */
  price: jobPriceSchema.optional(),
});
export type JobMessage = z.infer<typeof jobMessageSchema>;

export const JOB_EVENT_VERSION = 1;

export const JOB_EVENT_TYPES = [
  'enqueued',
  'retry_scheduled',
  'quarantined',
  'expired',
  'replayed',
  'purged',
  'completed',
  'failed',
] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

/** Published on the events exchange with routing key `job.<type>`; recorders consume it. */
export const jobEventSchema = z.object({
  v: z.literal(JOB_EVENT_VERSION),
  /** Unique per event: recorders deduplicate on it. */
  eventId: uuid,
  type: z.enum(JOB_EVENT_TYPES),
  jobId: uuid,
  namespaceId: uuid,
  model: name,
  environment: environmentSchema,
  attempt: z.number().int().min(0),
  at: z.string().datetime(),
  reason: z.string().max(500).optional(),
  nodeId: z.string().max(100).optional(),
});
export type JobEvent = z.infer<typeof jobEventSchema>;

export function encodeJob(job: JobMessage): Buffer {
  return Buffer.from(JSON.stringify(jobMessageSchema.parse(job)));
}

/** Parses what we receive; returns undefined (never throws) for a body that breaks the contract. */
export function decodeJob(body: Buffer): JobMessage | undefined {
  try {
    const r = jobMessageSchema.safeParse(JSON.parse(body.toString('utf8')));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export function decodeEvent(body: Buffer): JobEvent | undefined {
  try {
    const r = jobEventSchema.safeParse(JSON.parse(body.toString('utf8')));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
