// A Responses API request as the chat completion job the nodes run: instructions and input items become
// messages (function calls and their outputs as assistant tool_calls and tool messages), tools and
// text.format their chat forms. Every field the contract accepts is carried over or answered; none is dropped.
import type { ChatCompletionBody } from './cloud.contracts.js';
import type { InputItem, ResponsesBody } from './responses.contracts.js';

type Message = ChatCompletionBody['messages'][number];
type Part = Extract<InputItem, { type: 'message' }>['content'][number];

function contentOf(content: Part[]): string | Array<Record<string, unknown>> {
  const textOf = (p: Part) => (p.type === 'refusal' ? p.refusal : p.type === 'input_image' ? '' : p.text);
  // Text only: one string, which every OpenAI-compatible server takes for every role.
  if (content.every((p) => p.type !== 'input_image')) return content.map(textOf).join('');
  return content.map((p) =>
    p.type === 'input_image'
      ? { type: 'image_url', image_url: { url: p.image_url, ...(p.detail ? { detail: p.detail } : {}) } }
      : { type: 'text', text: textOf(p) },
  );
}

function messagesOf(body: ResponsesBody): Message[] {
  const out: Message[] = [];
  if (body.instructions) out.push({ role: 'system', content: body.instructions });
  for (const item of body.input) {
    if (item.type === 'message') {
      out.push({ role: item.role, content: contentOf(item.content) as Message['content'] });
      continue;
    }
    if (item.type === 'function_call_output') {
      out.push({ role: 'tool', tool_call_id: item.call_id, content: item.output });
      continue;
    }
    // Consecutive function calls are one assistant turn, after that turn's text if it had any.
    const call = {
      id: item.call_id,
      type: 'function',
      function: { name: item.name, arguments: item.arguments },
    };
    const last = out.at(-1);
    if (last?.role === 'assistant') {
      const calls = (last.tool_calls as unknown[] | undefined) ?? [];
      last.tool_calls = [...calls, call];
    } else out.push({ role: 'assistant', content: null, tool_calls: [call] });
  }
  return out;
}

/** The chat completion body of a Responses request (what the node receives). */
export function chatBodyOf(body: ResponsesBody): ChatCompletionBody {
  const format = body.text?.format;
  const logprobs = body.include?.includes('message.output_text.logprobs') === true;
  const chat: ChatCompletionBody = {
    model: body.model,
    messages: messagesOf(body),
    stream: body.stream === true,
    ...(body.max_output_tokens ? { max_tokens: body.max_output_tokens } : {}),
    ...(body.temperature != null ? { temperature: body.temperature } : {}),
    ...(body.top_p != null ? { top_p: body.top_p } : {}),
    ...(body.user !== undefined ? { user: body.user } : {}),
    ...(body.safety_identifier !== undefined ? { safety_identifier: body.safety_identifier } : {}),
    ...(body.prompt_cache_key !== undefined ? { prompt_cache_key: body.prompt_cache_key } : {}),
    ...(body.parallel_tool_calls != null ? { parallel_tool_calls: body.parallel_tool_calls } : {}),
    ...(logprobs
      ? { logprobs: true, ...(body.top_logprobs ? { top_logprobs: body.top_logprobs } : {}) }
      : {}),
  };
  if (body.tools?.length)
    chat.tools = body.tools.map((t) => ({
      type: 'function',
      function: {
        name: t.name,
        ...(t.description ? { description: t.description } : {}),
        ...(t.parameters ? { parameters: t.parameters } : {}),
        ...(t.strict != null ? { strict: t.strict } : {}),
      },
    }));
  if (body.tool_choice !== undefined)
    chat.tool_choice =
      typeof body.tool_choice === 'string'
        ? body.tool_choice
        : { type: 'function', function: { name: body.tool_choice.name } };
  if (format?.type === 'json_schema')
    chat.response_format = {
      type: 'json_schema',
      json_schema: {
        name: format.name,
        schema: format.schema,
        ...(format.description ? { description: format.description } : {}),
        ...(format.strict != null ? { strict: format.strict } : {}),
      },
    };
  else if (format) chat.response_format = { type: format.type };
  return chat;
}
