// The Responses event stream's bookkeeping without I/O: a gap in the deltas is completed from the final result,
// tool calls the node did not stream are sent whole, and an error ends the stream with one `error` event.
import type { FastifyReply } from 'fastify';
import { describe, expect, it } from 'vitest';
import type { JobResult, JobStreams, StreamEvent } from '../../modules/jobs/index.js';
import { AppError } from '../../platform/errors.js';
import { echoOf } from './responses.render.js';
import { ResponseStream } from './responses.stream.js';

const jobId = '00000000-0000-4000-8000-000000000001';

async function setup() {
  let listener: (e: StreamEvent) => void = () => undefined;
  const streams = {
    listen: (_id: string, l: (e: StreamEvent) => void) => {
      listener = l;
      return Promise.resolve(() => Promise.resolve());
    },
  } as unknown as JobStreams;
  const written: string[] = [];
  const raw = {
    writableEnded: false,
    destroyed: false,
    on: () => raw,
    writeHead: () => raw,
    write: (s: string) => written.push(s),
    end: () => (raw.writableEnded = true),
  };
  const reply = { hijack: () => undefined, getHeaders: () => ({}), raw } as unknown as FastifyReply;
  const resets: string[] = [];
  const stream = await ResponseStream.open(streams, {
    jobId,
    echo: echoOf({ model: 'm', input: [] }),
    onReset: (r) => resets.push(r),
    onDisconnect: () => undefined,
  });
  stream.start(reply, new Date('2026-01-01T00:00:00Z'));
  const events = () =>
    written.map((w) => JSON.parse(w.split('\n')[1]!.slice('data: '.length)) as Record<string, unknown>);
  return { emit: (e: StreamEvent) => listener(e), stream, events, resets, raw };
}

const result = (output: JobResult['output']): JobResult => ({
  v: 1,
  jobId,
  namespaceId: jobId,
  model: 'm',
  kind: 'chat',
  status: 'succeeded',
  output,
  usage: { promptTokens: 2, completionTokens: 3 },
  costMicro: '50',
  attempts: 1,
  nodeAddress: null,
  createdAt: '2026-01-01T00:00:00Z',
  finishedAt: '2026-01-01T00:00:01Z',
});

describe('ResponseStream', () => {
  it('a missed delta stops forwarding; the rest of the text comes from the result', async () => {
    const s = await setup();
    s.emit({ type: 'delta', seq: 0, text: 'a' });
    s.emit({ type: 'delta', seq: 2, text: ' c' });
    s.emit({ type: 'delta', seq: 1, text: ' b' });
    await s.stream.finish(result({ text: 'a b c', finishReason: 'stop' }));
    const deltas = s.events().filter((e) => e.type === 'response.output_text.delta');
    expect(deltas.map((e) => e.delta)).toEqual(['a', ' b c']);
    const last = s.events().at(-1) as { type: string; response: { output: Array<{ content: unknown[] }> } };
    expect(last.type).toBe('response.completed');
    expect(last.response.output[0]!.content).toEqual([
      { type: 'output_text', text: 'a b c', annotations: [], logprobs: [] },
    ]);
    expect(s.events().map((e) => e.sequence_number)).toEqual(s.events().map((_, i) => i));
    expect(s.raw.writableEnded).toBe(true);
  });

  it('tool calls not streamed are sent whole as function_call items; a length finish is incomplete', async () => {
    const s = await setup();
    await s.stream.finish(
      result({
        text: '',
        finishReason: 'length',
        toolCalls: [{ id: 'call_9', type: 'function', function: { name: 'f', arguments: '{"x":1}' } }],
      }),
    );
    const types = s.events().map((e) => e.type);
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.incomplete',
    ]);
    const last = s.events().at(-1) as { response: Record<string, unknown> };
    expect(last.response).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      output: [
        { type: 'function_call', call_id: 'call_9', name: 'f', arguments: '{"x":1}', status: 'completed' },
      ],
      usage: { input_tokens: 2, output_tokens: 3, total_tokens: 5 },
    });
  });

  it('a reset is reported to the caller, and a failure ends the stream with one error event', async () => {
    const s = await setup();
    s.emit({ type: 'reset', reason: 'node lost' });
    expect(s.resets).toEqual(['node lost']);
    await s.stream.fail(new AppError('job_failed', 'the node failed mid-stream'));
    expect(s.events().at(-1)).toMatchObject({
      type: 'error',
      code: 'job_failed',
      message: 'the node failed mid-stream',
    });
    await s.stream.finish(result({ text: 'late' }));
    expect(s.events().at(-1)!.type).toBe('error');
  });
});
