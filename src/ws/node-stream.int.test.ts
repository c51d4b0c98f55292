// Streamed jobs end to end through real node agents on the WebSocket gateway and the official `openai`
// client (plus raw HTTP): deltas reach the client while the node still produces them, chunk shapes as OpenAI
// sends them (include_usage on/off), tool calls from a loopback OpenAI-compatible upstream (streamed and not),
// a forged or reordered stream refused, deltas from a node not holding the lease refused, and a client on
// another backbone process than the node's (deltas over Redis pub/sub).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import { bindNodes, fundedNamespace, gatewayOverrides, MODEL, newAgent } from '../../test/gateway-harness.js';
import type { RunningServer } from '../app/serve.js';
import type { NodeAgent } from '../agent/node-agent.js';
import { BuiltinRuntime, UpstreamRuntime, type NodeRuntime } from '../agent/node-runtime.js';

const TOOLS_MODEL = 'tools-model';
const FORGE_MODEL = 'forge-model';
const REORDER_MODEL = 'reorder-model';
const STALL_MODEL = 'stall-model';
const INTER_TOKEN_MS = 1_500;

let stores: TestStores;
let a: RunningServer;
let b: RunningServer;
let upstream: Server;
let agents: NodeAgent[] = [];
let slow: NodeAgent;
let reorder: NodeAgent;
let apiKey: string;
let nsId: string;
let stall: NodeAgent;
/** Node and client events in the order this process saw them. */
const events: string[] = [];

const weatherArgs = '{"city":"Paris"}';

/** A loopback OpenAI-compatible server: answers with a tool call when `tools` are given, else with text. */
function startUpstream(): Promise<Server> {
  const srv = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as { stream?: boolean; tools?: unknown[]; model: string };
      const usage = { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 };
      const tool = Array.isArray(body.tools) && body.tools.length > 0;
      const base = { id: 'up-1', object: 'chat.completion.chunk', created: 1, model: body.model };
      if (!body.stream) {
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            id: 'up-1',
            object: 'chat.completion',
            choices: [
              tool
                ? {
                    index: 0,
                    message: {
                      role: 'assistant',
                      content: null,
                      tool_calls: [
                        {
                          id: 'call_1',
                          type: 'function',
                          function: { name: 'get_weather', arguments: weatherArgs },
                        },
                      ],
                    },
                    finish_reason: 'tool_calls',
                  }
                : {
                    index: 0,
                    message: { role: 'assistant', content: 'plain answer' },
                    finish_reason: 'stop',
                  },
            ],
            usage,
          }),
        );
        return;
      }
      res.setHeader('content-type', 'text/event-stream');
      const send = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
      const choice = (delta: unknown, finish: string | null = null) => ({
        ...base,
        choices: [{ index: 0, delta, finish_reason: finish }],
      });
      send(choice({ role: 'assistant', content: '' }));
      if (tool) {
        send(
          choice({
            tool_calls: [
              { index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } },
            ],
          }),
        );
        send(choice({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }));
        send(choice({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }));
        send(choice({}, 'tool_calls'));
      } else {
        send(choice({ content: 'plain' }));
        send(choice({ content: ' answer' }));
        send(choice({}, 'stop'));
      }
      send({ ...base, choices: [], usage });
      res.end('data: [DONE]\n\n');
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

/** Streams deltas that do not add up to the output it signs. */
const forgingRuntime: NodeRuntime = {
  name: 'forge',
  run(_model, _request, opts = {}) {
    opts.onDelta?.({ text: 'what you' });
    opts.onDelta?.({ text: ' see' });
    return Promise.resolve({ tokensIn: 2, tokensOut: 2, output: 'what you pay for', finishReason: 'stop' });
  },
};

beforeAll(async () => {
  stores = await createTestStores();
  const overrides = {
    ...gatewayOverrides,
    ROUTING_MAX_ATTEMPTS: 1,
    NODE_INTER_TOKEN_TIMEOUT_MS: INTER_TOKEN_MS,
  };
  a = await startTestServer(stores, { overrides });
  // A second process serving the Cloud API only: its clients' nodes are all connected to `a`.
  b = await startTestServer(stores, { roles: 'cloud', overrides });
  upstream = await startUpstream();
  slow = newAgent(a, {
    runtime: new BuiltinRuntime({ tokenDelayMs: 200 }),
    onDelta: (d) => events.push(`node:delta:${d.seq}`),
    onResultSent: () => events.push('node:result'),
  });
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  reorder = newAgent(a, {
    models: [REORDER_MODEL],
    runtime: {
      name: 'reorder',
      run: (model, request, opts) => {
        const f = reorder.jobFrames.at(-1)!;
        // Delta 1 before delta 0: the gateway must refuse the stream.
        reorder.sendRaw({
          v: 1,
          type: 'job.delta',
          jobId: f.jobId,
          fencingToken: f.fencingToken,
          seq: 1,
          text: 'b',
        });
        return new BuiltinRuntime().run(model, request, opts);
      },
    },
  });
  stall = newAgent(a, {
    models: [STALL_MODEL],
    runtime: {
      name: 'stall',
      // One delta, then silence well past the inter-token timeout.
      run: async (_model, _request, opts = {}) => {
        opts.onDelta?.({ text: 'first' });
        await new Promise((r) => setTimeout(r, INTER_TOKEN_MS * 3));
        return { tokensIn: 1, tokensOut: 2, output: 'first second', finishReason: 'stop' };
      },
    },
  });
  agents = [
    slow,
    stall,
    reorder,
    newAgent(a, { models: [TOOLS_MODEL], runtime: new UpstreamRuntime(url) }),
    newAgent(a, { models: [FORGE_MODEL], runtime: forgingRuntime }),
  ];
  await bindNodes(
    a.backbone,
    agents.map((x) => x.address),
  );
  await Promise.all(agents.map((x) => x.start()));
  nsId = await fundedNamespace(a.backbone);
  apiKey = (await a.backbone.accounts.createApiKey({ namespaceId: nsId, name: 'stream' })).plaintext;
});
afterAll(async () => {
  await Promise.all(agents.map((x) => x.stop()));
  await new Promise((r) => upstream?.close(r));
  await b?.stop();
  await a?.stop();
  await stores?.drop();
});

const client = (s: RunningServer = a) =>
  new OpenAI({ baseURL: `${s.url}/v1`, apiKey, maxRetries: 0, timeout: 20_000 });

const chunkSchema = z.strictObject({
  id: z.string().startsWith('chatcmpl-'),
  object: z.literal('chat.completion.chunk'),
  created: z.number().int().positive(),
  model: z.string(),
  system_fingerprint: z.null(),
  choices: z.array(
    z.strictObject({
      index: z.literal(0),
      delta: z.strictObject({
        role: z.literal('assistant').optional(),
        content: z.string().optional(),
        refusal: z.null().optional(),
        tool_calls: z
          .array(
            z.object({
              index: z.number().int(),
              id: z.string().optional(),
              type: z.literal('function').optional(),
              function: z
                .object({ name: z.string().optional(), arguments: z.string().optional() })
                .optional(),
            }),
          )
          .optional(),
      }),
      logprobs: z.null(),
      finish_reason: z.enum(['stop', 'length', 'tool_calls', 'content_filter']).nullable(),
    }),
  ),
  usage: z
    .object({ prompt_tokens: z.number(), completion_tokens: z.number(), total_tokens: z.number() })
    .nullable()
    .optional(),
});

describe('streamed jobs', () => {
  it('the first delta reaches the client before the node produced its last one; chunks shaped as OpenAI', async () => {
    events.length = 0;
    const stream = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'one two three four five' }],
      stream: true,
    });
    const chunks: unknown[] = [];
    for await (const c of stream) {
      chunks.push(c);
      if (c.choices[0]?.delta.content) events.push(`client:content`);
    }
    // Node side: five deltas then the result; the client saw content before the node's last delta.
    expect(events.filter((e) => e.startsWith('node:delta'))).toHaveLength(5);
    expect(events.indexOf('client:content')).toBeLessThan(events.indexOf('node:delta:4'));
    // One chunk per delta, in order, between the role chunk and the finish chunk; no usage without include_usage.
    const parsed = chunks.map((c) => chunkSchema.parse(c));
    expect(parsed[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '', refusal: null });
    expect(parsed.slice(1, -1).map((c) => c.choices[0]!.delta.content)).toEqual([
      'five',
      ' four',
      ' three',
      ' two',
      ' one',
    ]);
    expect(parsed.at(-1)!.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' });
    expect(parsed.every((c) => !('usage' in c))).toBe(true);
    expect(new Set(parsed.map((c) => c.id)).size).toBe(1);
  });

  it('include_usage: every chunk has usage null and a last chunk with choices [] carries it (raw SSE)', async () => {
    const res = await fetch(`${a.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: 'usage please' }],
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    const events = text.split('\n\n').filter(Boolean);
    expect(events.every((e) => e.startsWith('data: '))).toBe(true);
    expect(events.at(-1)).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => chunkSchema.parse(JSON.parse(e.slice(6))));
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 });
    expect(chunks.slice(0, -1).every((c) => c.usage === null && c.choices.length === 1)).toBe(true);
    expect(
      chunks
        .slice(0, -1)
        .map((c) => c.choices[0]!.delta.content ?? '')
        .join(''),
    ).toBe('please usage');
  });

  it('completions stream as text_completion chunks', async () => {
    const stream = await client().completions.create({
      model: MODEL,
      prompt: 'alpha beta',
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.every((c) => c.object === 'text_completion' && c.id.startsWith('cmpl-'))).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe('beta alpha');
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 2, completion_tokens: 2 } });
  });

  it('tool calls from the upstream reach the client, streamed and not', async () => {
    const tools = [
      {
        type: 'function' as const,
        function: {
          name: 'get_weather',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ];
    const messages = [{ role: 'user' as const, content: 'weather in Paris?' }];
    const full = await client().chat.completions.create({ model: TOOLS_MODEL, messages, tools });
    expect(full.choices[0]!.finish_reason).toBe('tool_calls');
    expect(full.choices[0]!.message.content).toBeNull();
    expect(full.choices[0]!.message.tool_calls).toEqual([
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: weatherArgs } },
    ]);
    expect(full.usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 5 });

    const stream = await client().chat.completions.create({
      model: TOOLS_MODEL,
      messages,
      tools,
      stream: true,
    });
    let name = '';
    let args = '';
    let finish: string | null | undefined;
    let fragments = 0;
    for await (const c of stream) {
      chunkSchema.parse(c);
      for (const t of c.choices[0]?.delta.tool_calls ?? []) {
        fragments += 1;
        name += t.function?.name ?? '';
        args += t.function?.arguments ?? '';
      }
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect({ name, args, finish }).toEqual({ name: 'get_weather', args: weatherArgs, finish: 'tool_calls' });
    expect(fragments).toBe(3); // forwarded as the upstream sent them

    const plain = await client().chat.completions.create({
      model: TOOLS_MODEL,
      messages,
      stream: true,
    });
    let text = '';
    for await (const c of plain) text += c.choices[0]?.delta.content ?? '';
    expect(text).toBe('plain answer');
  });

  it('a stream that does not match the signed result, or arrives out of order, is refused mid-stream', async () => {
    for (const model of [FORGE_MODEL, REORDER_MODEL]) {
      const stream = await client().chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'a b' }],
        stream: true,
      });
      const err = await (async () => {
        for await (const _ of stream) void _;
      })().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).message).toMatch(/failed|cancelled/);
    }
    // Nothing of those jobs was charged: every hold is closed, none succeeded.
    const rows = await a.backbone.pool.query<{ status: string; n: string }>(
      `SELECT status, count(*) AS n FROM jobs WHERE model IN ($1, $2) GROUP BY status`,
      [FORGE_MODEL, REORDER_MODEL],
    );
    expect(rows.rows.map((r) => r.status).filter((s) => s === 'succeeded')).toEqual([]);
  });

  it('a node silent past the inter-token timeout ends the stream as a node_timeout', async () => {
    const stream = await client().chat.completions.create({
      model: STALL_MODEL,
      messages: [{ role: 'user', content: 'stall' }],
      stream: true,
    });
    let text = '';
    const err = await (async () => {
      for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    })().catch((e: unknown) => e);
    expect(text).toBe('first');
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as Error).message).toMatch(/timed out: no delta/);
    const jobId = stall.jobFrames.at(-1)!.jobId;
    const result = await a.backbone.jobs.getResult(nsId, jobId);
    expect(['cancelled', 'failed']).toContain(result?.status);
    expect(result?.costMicro).toBe('0');
  });

  it('a delta from a node not holding the job is refused', async () => {
    const errors = new Promise<string>((resolve) =>
      reorder.onFrame((f) => f.type === 'error' && f.reason === 'not_lease_holder' && resolve(f.message)),
    );
    const stream = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'x y z' }],
      stream: true,
    });
    const job = slow.jobFrames.at(-1)!;
    reorder.sendRaw({
      v: 1,
      type: 'job.delta',
      jobId: job.jobId,
      fencingToken: job.fencingToken,
      seq: 0,
      text: 'forged',
    });
    expect(await errors).toMatch(/holds no streamed delivery/);
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    expect(text).toBe('z y x');
  });

  it('a client on another process than the node gets the deltas over Redis as they come', async () => {
    events.length = 0;
    const stream = await client(b).chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'relay to the other side' }],
      stream: true,
    });
    let text = '';
    for await (const c of stream) {
      const d = c.choices[0]?.delta.content;
      if (d) events.push('client:content');
      text += d ?? '';
    }
    expect(text).toBe('side other the to relay');
    expect(events.filter((e) => e === 'client:content')).toHaveLength(5);
    expect(events.indexOf('client:content')).toBeLessThan(events.indexOf('node:delta:4'));
  });

  it('GET /v1/models/{id}: the model, or 404 shaped as OpenAI', async () => {
    expect(await client().models.retrieve(MODEL)).toMatchObject({ id: MODEL, object: 'model' });
    const err = await client()
      .models.retrieve('no-such-model')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
  });
});
