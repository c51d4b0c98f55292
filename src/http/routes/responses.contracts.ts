// Request schema of the stateless OpenAI Responses API (`POST /v1/responses`, zod). Strict: a field this
// network does not offer (stored responses, conversations, built-in tools, reasoning) is a 400 naming it.
import { z } from 'zod';
import { unsupported } from './cloud.contracts.js';

const stateless = (field: string) =>
  unsupported(`${field} needs stored responses, and this API is stateless: send the whole input each time`);

const text = z.string().max(1_000_000);

const inputPart = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('input_text'), text }),
    z.strictObject({
      type: z.literal('output_text'),
      text,
      annotations: z.array(z.unknown()).max(1_000).optional(),
      logprobs: z.array(z.unknown()).optional(),
    }),
    z.strictObject({ type: z.literal('refusal'), refusal: text }),
    z.strictObject({
      type: z.literal('input_image'),
      image_url: z.string().max(20_000_000),
      detail: z.enum(['low', 'high', 'auto']).optional(),
    }),
  ],
  { error: 'a content part of type input_text, output_text, refusal or input_image (with image_url)' },
);

const messageItem = z.strictObject({
  type: z.literal('message'),
  role: z.enum(['user', 'system', 'developer', 'assistant']),
  // A string content is one text part (so a part's error names its index, e.g. input.0.content.0.type).
  content: z.preprocess(
    (x) => (typeof x === 'string' ? [{ type: 'input_text', text: x }] : x),
    z.array(inputPart).max(256),
  ),
  id: z.string().max(200).optional(),
  status: z.enum(['in_progress', 'completed', 'incomplete']).optional(),
});

const functionCallItem = z.strictObject({
  type: z.literal('function_call'),
  call_id: z.string().min(1).max(200),
  name: z.string().min(1).max(200),
  arguments: z.string().max(1_000_000),
  id: z.string().max(200).optional(),
  status: z.enum(['in_progress', 'completed', 'incomplete']).optional(),
});

const functionCallOutputItem = z.strictObject({
  type: z.literal('function_call_output'),
  call_id: z.string().min(1).max(200),
  output: text,
  id: z.string().max(200).optional(),
  status: z.enum(['in_progress', 'completed', 'incomplete']).optional(),
});

export const inputItem = z.preprocess(
  // An easy input message (`{ role, content }`) has no `type`: it is a message.
  (x) =>
    x && typeof x === 'object' && !('type' in x) && 'role' in x ? { type: 'message', ...(x as object) } : x,
  z.discriminatedUnion('type', [messageItem, functionCallItem, functionCallOutputItem], {
    error:
      'an input item of type message, function_call or function_call_output (item_reference and stored items ' +
      'need stored responses, and this API is stateless)',
  }),
);
export type InputItem = z.infer<typeof inputItem>;

const functionTool = z.strictObject({
  type: z.literal('function', {
    error: 'only function tools are supported (no built-in tools such as web_search or file_search)',
  }),
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'a name of 1-64 letters, digits, _ or -'),
  description: z.string().max(10_000).nullable().optional(),
  parameters: z.record(z.string(), z.unknown()).nullable().optional(),
  strict: z.boolean().nullable().optional(),
});

const textFormat = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('text') }),
    z.strictObject({ type: z.literal('json_object') }),
    z.strictObject({
      type: z.literal('json_schema'),
      name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'a name of 1-64 letters, digits, _ or -'),
      schema: z.record(z.string(), z.unknown()),
      description: z.string().max(10_000).optional(),
      strict: z.boolean().nullable().optional(),
    }),
  ],
  { error: 'a text format of type text, json_object or json_schema' },
);

export const responsesBody = z
  .strictObject({
    model: z.string().min(1).max(200),
    // A string input is one user message (as one item, so an item's error names its index, e.g. input.0).
    input: z.preprocess(
      (x) => (typeof x === 'string' ? [{ type: 'message', role: 'user', content: x }] : x),
      z.array(inputItem).min(1).max(1024),
    ),
    instructions: text.nullable().optional(),
    max_output_tokens: z.number().int().min(1).max(1_000_000).nullable().optional(),
    temperature: z.number().min(0).max(2).nullable().optional(),
    top_p: z.number().min(0).max(1).nullable().optional(),
    stream: z.boolean().nullable().optional(),
    // Obfuscation pads delta events against side channels; these events carry no padding either way.
    stream_options: z.strictObject({ include_obfuscation: z.boolean().optional() }).nullable().optional(),
    tools: z.array(functionTool).max(128).optional(),
    tool_choice: z
      .union([
        z.enum(['none', 'auto', 'required']),
        z.strictObject({ type: z.literal('function'), name: z.string().min(1).max(200) }),
      ])
      .optional(),
    parallel_tool_calls: z.boolean().nullable().optional(),
    text: z
      .strictObject({
        format: textFormat.optional(),
        verbosity: unsupported('text.verbosity is not supported'),
      })
      .optional(),
    top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
    include: z
      .array(
        z.literal('message.output_text.logprobs', {
          error: 'only message.output_text.logprobs can be included (nothing is stored to include)',
        }),
      )
      .max(8)
      .nullable()
      .optional(),
    user: z.string().max(256).optional(),
    // Hints about the caller and prompt caching: passed to the node as chat takes them (nothing comes back).
    safety_identifier: z.string().max(256).optional(),
    prompt_cache_key: z.string().max(256).optional(),
    metadata: z.record(z.string().max(64), z.string().max(512)).nullable().optional(),
    service_tier: z.enum(['auto', 'default']).nullable().optional(),
    truncation: z
      .literal('disabled', {
        error: 'truncation: auto is not supported; send truncation: disabled or omit it',
      })
      .nullable()
      .optional(),
    store: z
      .literal(false, {
        error: 'store: true needs stored responses, and this API is stateless: send store: false or omit it',
      })
      .nullable()
      .optional(),
    background: z
      .literal(false, {
        error: 'background responses are not supported; poll /v1/chat/completions jobs instead',
      })
      .nullable()
      .optional(),
    previous_response_id: stateless('previous_response_id'),
    conversation: stateless('conversation'),
    prompt: stateless('prompt (a stored prompt template)'),
    reasoning: unsupported('reasoning options are not supported by the nodes'),
    max_tool_calls: unsupported('max_tool_calls is not supported (there are no built-in tools)'),
  })
  .superRefine((body, ctx) => {
    const logprobs = body.include?.includes('message.output_text.logprobs') === true;
    if (body.stream === true && logprobs)
      ctx.addIssue({
        code: 'custom',
        path: ['include'],
        message: 'logprobs are not offered with stream: true; drop message.output_text.logprobs or stream',
      });
    if ((body.top_logprobs ?? 0) > 0 && !logprobs)
      ctx.addIssue({
        code: 'custom',
        path: ['top_logprobs'],
        message: 'top_logprobs needs include: ["message.output_text.logprobs"]',
      });
  });
export type ResponsesBody = z.infer<typeof responsesBody>;
