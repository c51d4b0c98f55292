// A Responses request as the chat body the node receives: every accepted field carried over, none dropped.
import { describe, expect, it } from 'vitest';
import { responsesBody } from './responses.contracts.js';
import { chatBodyOf } from './responses.request.js';

const chat = (body: unknown) => chatBodyOf(responsesBody.parse(body));

describe('chatBodyOf', () => {
  it('instructions, a string input, sampling, limits and tool choice', () => {
    expect(
      chat({
        model: 'm',
        instructions: 'be brief',
        input: 'hi',
        temperature: 0.5,
        top_p: 0.9,
        max_output_tokens: 30,
        tool_choice: { type: 'function', name: 'f' },
        parallel_tool_calls: false,
        text: { format: { type: 'json_object' } },
      }),
    ).toEqual({
      model: 'm',
      stream: false,
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hi' },
      ],
      temperature: 0.5,
      top_p: 0.9,
      max_tokens: 30,
      tool_choice: { type: 'function', function: { name: 'f' } },
      parallel_tool_calls: false,
      response_format: { type: 'json_object' },
    });
  });

  it('content parts: text joined into one string, images as image_url parts; assistant text then its calls', () => {
    const body = chat({
      model: 'm',
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'look: ' },
            { type: 'input_image', image_url: 'https://x.example/a.png', detail: 'low' },
          ],
        },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'calling' }] },
        { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' },
        { type: 'function_call', call_id: 'c2', name: 'g', arguments: '{}' },
        { type: 'function_call_output', call_id: 'c1', output: 'one' },
      ],
    });
    expect(body.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'look: ' },
          { type: 'image_url', image_url: { url: 'https://x.example/a.png', detail: 'low' } },
        ],
      },
      {
        role: 'assistant',
        content: 'calling',
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } },
          { id: 'c2', type: 'function', function: { name: 'g', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'one' },
    ]);
  });

  it('refuses what it cannot carry, naming the field', () => {
    const issue = (body: unknown) => responsesBody.safeParse(body).error?.issues[0];
    expect(issue({ model: 'm', input: 'x', previous_response_id: 'r' })?.path).toEqual([
      'previous_response_id',
    ]);
    expect(issue({ model: 'm', input: [{ type: 'input_file', file_id: 'f' }] })?.path).toEqual([
      'input',
      0,
      'type',
    ]);
    expect(
      issue({ model: 'm', input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] })?.path,
    ).toEqual(['input', 0, 'content', 0, 'type']);
    expect(issue({ model: 'm', input: 'x', top_logprobs: 2 })?.path).toEqual(['top_logprobs']);
  });
});
