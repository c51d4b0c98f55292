// Request schemas of the OpenAI-compatible Cloud API (zod; fields we do not use pass through to the node).
import { z } from 'zod';
import { environmentSchema, jobIdSchema, priorityClassSchema } from '../../config/vocabulary.js';

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

/** Most choices one request may ask for (`n`): all run on one node, so its output budget is n × max_tokens. */
export const MAX_CHOICES = 8;

/** A field the network cannot honour: refused with a 400 naming it (and why), never dropped silently. */
export const unsupported = (why: string) => z.never({ error: why }).optional();

const common = {
  model,
  max_tokens: maxTokens.nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  n: z.number().int().min(1).max(MAX_CHOICES).nullable().optional(),
  seed: z.number().int().nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullable().optional() }).nullable().optional(),
  stop: z
    .union([z.string(), z.array(z.string()).max(4)])
    .nullable()
    .optional(),
  user: z.string().max(256).optional(),
};

/** `response_format` as OpenAI takes it; the node's runtime honours it or fails the job saying it cannot. */
export const responseFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    json_schema: z.object({
      name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'a name of 1-64 letters, digits, _ or -'),
      description: z.string().max(10_000).optional(),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullable().optional(),
    }),
  }),
]);

/**
 * Streamed legacy completions carry neither a choice index other than 0 nor logprobs: refused rather than lost
 * (chat streams them: see ChunkStream.finish).
 */
function refuseStreamedExtras(
  body: { stream?: boolean | null; n?: number | null; logprobs?: unknown },
  ctx: z.RefinementCtx,
): void {
  if (body.stream !== true) return;
  if ((body.n ?? 1) > 1)
    ctx.addIssue({
      code: 'custom',
      path: ['n'],
      message: 'n > 1 is not offered with stream: true; send n: 1',
    });
  if (body.logprobs !== undefined && body.logprobs !== null && body.logprobs !== false)
    ctx.addIssue({
      code: 'custom',
      path: ['logprobs'],
      message: 'logprobs are not offered with stream: true; drop logprobs or stream: false',
    });
}

export const chatCompletionBody = z
  .looseObject({
    ...common,
    messages: z.array(chatMessage).min(1).max(1024),
    max_completion_tokens: maxTokens.nullable().optional(),
    logprobs: z.boolean().nullable().optional(),
    top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
    response_format: responseFormat.nullable().optional(),
    // Outputs a node result cannot carry back, and stored-completion features: refused, naming the field.
    audio: unsupported('audio output is not supported; only text is'),
    modalities: z
      .array(z.literal('text', { error: 'only the text modality is supported' }))
      .nullable()
      .optional(),
    web_search_options: unsupported('web search is not supported'),
    prediction: unsupported('predicted outputs are not supported'),
    functions: unsupported('the legacy functions field is not supported; use tools'),
    function_call: unsupported('the legacy function_call field is not supported; use tool_choice'),
    store: z
      .literal(false, { error: 'stored completions are not supported; send store: false or omit it' })
      .nullable()
      .optional(),
  })
  .superRefine((body, ctx) => {
    if ((body.top_logprobs ?? 0) > 0 && body.logprobs !== true)
      ctx.addIssue({ code: 'custom', path: ['top_logprobs'], message: 'top_logprobs needs logprobs: true' });
  });
export type ChatCompletionBody = z.infer<typeof chatCompletionBody>;

export const completionBody = z
  .looseObject({
    ...common,
    prompt: z.union([z.string(), z.array(z.string()).min(1).max(256)]),
    /** Legacy completions: the number of alternatives per token (0-5), not a boolean. */
    logprobs: z.number().int().min(0).max(5).nullable().optional(),
    best_of: unsupported('best_of is not supported; use n'),
  })
  .superRefine(refuseStreamedExtras);
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
  id: jobIdSchema,
});

/** Optional headers of a submission. */
export const submitHeaders = z.looseObject({
  'idempotency-key': z.string().max(255).optional(),
  /** `sync` (default: wait for the result) or `polling` (202 with the job id at once). */
  'x-rty-mode': z.enum(['sync', 'polling']).optional(),
  'x-rty-priority': priorityClassSchema.optional(),
  'x-rty-environment': environmentSchema.optional(),
  /**
   * What happens to a sync or streamed job whose client disconnects before the answer: `cancel` (the default
   * for streams: the node is stopped, the job charged for the prompt and the output delivered) or `continue`
   * (the default for non-streamed sync requests: it runs to the end and is charged; its result stays
   * retrievable with the same Idempotency-Key or GET /v1/jobs/:id).
   */
  'x-rty-on-disconnect': z.enum(['cancel', 'continue']).optional(),
});
export type SubmitHeaders = z.infer<typeof submitHeaders>;
