// The job-event contract (version 1) that producers publish and the recorder accepts, and the query filters.
import { z } from 'zod';
import {
  addressSchema as address,
  priorityClassSchema,
  uuidSchema as uuid,
} from '../../config/vocabulary.js';

/** Producer-chosen ids of log events: deterministic per event so a redelivery maps to the same document. */
const eventId = z.string().regex(/^[A-Za-z0-9:_-]{1,160}$/, '1-160 of A-Z a-z 0-9 : _ -');
const micro = z.string().regex(/^\d{1,15}$/, 'integer micro-credits as a decimal string (< 10^15)');
const count = z
  .number()
  .int()
  .min(0)
  .max(2 ** 31);

/** Micro-credits per 1,000 tokens (a price; the routing contract's bound). */
const perThousand = z.number().int().min(0).max(1e12);

export const LOG_TYPES = ['routing', 'execution', 'error', 'anomaly', 'qc'] as const;
export type LogType = (typeof LOG_TYPES)[number];
export const JOB_STATUSES = ['succeeded', 'failed', 'expired', 'cancelled'] as const;
export type TerminalStatus = (typeof JOB_STATUSES)[number];

const base = {
  version: z.literal(1),
  namespaceId: uuid,
  jobId: uuid,
  /** When it happened (producer clock, ISO 8601). */
  at: z.iso.datetime({ offset: true }),
  /** The job's model on every event (required on job.submitted) so logs can be filtered by model. */
  model: z.string().min(1).max(200).optional(),
};

const submission = {
  apiKeyId: uuid.nullable(),
  priority: priorityClassSchema,
  input: z.object({
    prompt: z.string().optional(),
    messages: z.array(z.object({ role: z.string().max(32), content: z.string() })).optional(),
    params: z.record(z.string(), z.unknown()).default({}),
    /** Images, audio …: base64 or text; large ones are stored outside the document. */
    attachments: z.array(z.object({ mediaType: z.string().max(100), data: z.string() })).default([]),
  }),
  blind: z.boolean().default(false),
};

export const jobSubmittedEvent = z.object({
  ...base,
  type: z.literal('job.submitted'),
  model: z.string().min(1).max(200),
  ...submission,
});

/**
 * What a job.submitted event says, carried by the finished event instead (the normal path): the recorder then
 * writes the job's one document from that event alone, without a submitted event, a lookup or log documents.
 */
export const jobSubmission = z.object({
  /** When the job was submitted (the job document's timestamp). */
  at: z.iso.datetime({ offset: true }),
  ...submission,
});

export const jobAssignedEvent = z.object({
  ...base,
  type: z.literal('job.assigned'),
  attempt: z.number().int().min(1).max(100),
  nodeAddress: address,
});

export const jobFallbackEvent = z.object({
  ...base,
  type: z.literal('job.fallback'),
  attempt: z.number().int().min(1).max(100),
  nodeAddress: address,
  reason: z.string().min(1).max(500),
});

export const jobFinishedEvent = z.object({
  ...base,
  type: z.literal('job.finished'),
  status: z.enum(JOB_STATUSES),
  nodeAddress: address.nullable(),
  assignedAt: z.iso.datetime({ offset: true }).nullable(),
  attempts: count,
  output: z
    .object({
      text: z.string(),
      tokensIn: count,
      tokensOut: count,
      finishReason: z.string().max(50),
    })
    .nullable(),
  error: z.string().max(2000).nullable().default(null),
  metrics: z.object({
    queueMs: count,
    executionMs: count,
    latencyMs: count,
    retries: count,
    gpu: z.record(z.string(), z.union([z.number(), z.string()])).default({}),
  }),
  flags: z
    .object({ moderation: z.boolean(), lowConfidence: z.boolean() })
    .default({ moderation: false, lowConfidence: false }),
  costMicro: micro,
  /** The price the job was charged at: the network config version of its price table, and its prices. */
  price: z
    .object({
      version: count,
      inputMicroPer1kTokens: perThousand,
      outputMicroPer1kTokens: perThousand,
    })
    .optional(),
  /** The routing history: each failed attempt before the last one (node and reason). */
  history: z
    .array(
      z.object({
        attempt: z.number().int().min(1).max(100),
        nodeAddress: z.string().max(100).nullable(),
        reason: z.string().max(500),
        cause: z.string().max(50).optional(),
      }),
    )
    .max(100)
    .optional(),
  /** The failure's code (and the last attempt's cause), on a failure. */
  code: z.string().max(50).optional(),
  cause: z.string().max(50).optional(),
  /** The submission, on the normal path (see jobSubmission); absent from older producers. */
  submitted: jobSubmission.optional(),
});

export const logEvent = z.object({
  ...base,
  type: z.literal('log'),
  eventId,
  logType: z.enum(LOG_TYPES),
  level: z.enum(['debug', 'info', 'warn', 'error']),
  message: z.string().max(4000),
  data: z.record(z.string(), z.unknown()).default({}),
});

export const qcResultEvent = z.object({
  ...base,
  type: z.literal('qc.result'),
  eventId,
  nodeAddress: address,
  verdict: z.enum(['pass', 'fail', 'inconclusive']),
  score: z.number().min(0).max(1),
  details: z.record(z.string(), z.unknown()).default({}),
});

export const recordEvent = z.discriminatedUnion('type', [
  jobSubmittedEvent,
  jobAssignedEvent,
  jobFallbackEvent,
  jobFinishedEvent,
  logEvent,
  qcResultEvent,
]);
export type RecordEvent = z.infer<typeof recordEvent>;
export type RecordEventInput = z.input<typeof recordEvent>;
export type JobSubmittedEvent = z.infer<typeof jobSubmittedEvent>;
export type JobFinishedEvent = z.infer<typeof jobFinishedEvent>;

/** Filter values are plain scalars: an object such as {"$gt": ""} or an unknown key is refused, never run. */
const isoOrDate = z.union([z.date(), z.iso.datetime({ offset: true }).transform((s) => new Date(s))]);
export const jobFilter = z
  .object({
    model: z.string().min(1).max(200).optional(),
    status: z.enum(JOB_STATUSES).optional(),
    apiKeyId: uuid.optional(),
    from: isoOrDate.optional(),
    to: isoOrDate.optional(),
    blind: z.boolean().optional(),
  })
  .strict();
export type JobFilter = z.input<typeof jobFilter>;

export const logFilter = z
  .object({
    logType: z.enum(LOG_TYPES).optional(),
    jobId: uuid.optional(),
    model: z.string().min(1).max(200).optional(),
    from: isoOrDate.optional(),
    to: isoOrDate.optional(),
  })
  .strict();
export type LogFilter = z.input<typeof logFilter>;

export const pageRequest = z
  .object({ limit: z.number().int().min(1).max(1000).default(100), cursor: z.string().max(500).optional() })
  .strict();
export type PageRequest = z.input<typeof pageRequest>;

export const aggregateRequest = z
  .object({
    by: z.enum(['model', 'apiKeyId']),
    from: isoOrDate.optional(),
    to: isoOrDate.optional(),
    model: z.string().min(1).max(200).optional(),
  })
  .strict();
export type AggregateRequest = z.input<typeof aggregateRequest>;
