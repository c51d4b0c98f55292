// Request schemas of the OpenAI-compatible Cloud API (zod; fields we do not use pass through to the node).
import { z } from 'zod';

const model = z.string().min(1).max(200);
const maxTokens = z.number().int().min(1).max(1_000_000);

const contentPart = z.looseObject({ type: z.string().max(50), text: z.string().optional() });
export const chatMessage = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z
    .union([z.string(), z.array(contentPart).max(256)])
    .nullable()
    .optional(),
  name: z.string().max(200).optional(),
});

const common = {
  model,
  max_tokens: maxTokens.nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  n: z.literal(1).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullable().optional() }).nullable().optional(),
  stop: z
    .union([z.string(), z.array(z.string()).max(4)])
    .nullable()
    .optional(),
  user: z.string().max(256).optional(),
};

export const chatCompletionBody = z.looseObject({
  ...common,
  messages: z.array(chatMessage).min(1).max(1024),
  max_completion_tokens: maxTokens.nullable().optional(),
});
export type ChatCompletionBody = z.infer<typeof chatCompletionBody>;

export const completionBody = z.looseObject({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).min(1).max(256)]),
});
export type CompletionBody = z.infer<typeof completionBody>;

export const embeddingBody = z.looseObject({
  model,
  input: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(2048)]),
  encoding_format: z.enum(['float', 'base64']).optional(),
  dimensions: z.number().int().min(1).max(65536).optional(),
  user: z.string().max(256).optional(),
});
export type EmbeddingBody = z.infer<typeof embeddingBody>;

export const jobParams = z.object({
  id: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'a job id (UUID)'),
});

/** Optional headers of a submission. */
export const submitHeaders = z.looseObject({
  'idempotency-key': z.string().max(255).optional(),
  /** `sync` (default: wait for the result) or `polling` (202 with the job id at once). */
  'x-rty-mode': z.enum(['sync', 'polling']).optional(),
  'x-rty-priority': z.enum(['urgent', 'bulk', 'test']).optional(),
  'x-rty-environment': z.enum(['testnet', 'mainnet']).optional(),
  /**
   * What happens to a sync or streamed job whose client disconnects before the answer: `cancel` (the default
   * for streams: the node is stopped, the job charged for the prompt and the output delivered) or `continue`
   * (the default for non-streamed sync requests: it runs to the end and is charged; its result stays
   * retrievable with the same Idempotency-Key or GET /v1/jobs/:id).
   */
  'x-rty-on-disconnect': z.enum(['cancel', 'continue']).optional(),
});
export type SubmitHeaders = z.infer<typeof submitHeaders>;
