// The rest of the OpenAI surface end to end, through real node agents on the WebSocket gateway, the official
// `openai` client and raw HTTP: the stateless Responses API (text, streaming with OpenAI's event sequence,
// function calls both ways), n > 1 (one job on one node, n × the output budget held, settled once), stop,
// seed, user and response_format reaching an OpenAI-compatible upstream, logprobs, and fields the network does
// not offer refused with a 400 naming them. Billing is checked to the micro-credit and the DESIGN.md
// invariants at the end.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import {
  bindNodes,
  fundedNamespace,
  gatewayOverrides,
  MODEL,
  newAgent,
} from '../../../test/gateway-harness.js';
import { BuiltinRuntime, UpstreamRuntime } from '../../agent/node-runtime.js';
import type { NodeAgent } from '../../agent/node-agent.js';
import { waitForInvariants } from '../../cli/invariants.js';
import type { RunningServer } from '../../app/serve.js';

const UPSTREAM_MODEL = 'upstream-model';
const OVERCLAIM_MODEL = 'overclaim-model';
const PRICE = 10;

let stores: TestStores;
let server: RunningServer;
let upstream: Server;
let agents: NodeAgent[] = [];
let nsId: string;
let apiKey: string;
/** The bodies the loopback upstream received, last one last. */
const received: Array<Record<string, unknown>> = [];

/** A loopback OpenAI-compatible server: n choices (with logprobs when asked), a tool call when tools are given. */
function startUpstream(): Promise<Server> {
  const srv = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as Record<string, unknown>;
      received.push(body);
      const tool = Array.isArray(body.tools) && body.tools.length > 0;
      const usage = { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 };
      if (!body.stream) {
        const n = typeof body.n === 'number' ? body.n : 1;
        const choices = Array.from({ length: n }, (_, index) =>
          tool
            ? {
                index,
                message: {
                  role: 'assistant',
                  content: null,
                  tool_calls: [
                    {
                      id: 'call_1',
                      type: 'function',
                      function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
                    },
                  ],
                },
                finish_reason: 'tool_calls',
              }
            : {
                index,
                message: { role: 'assistant', content: `answer ${index}` },
                logprobs: body.logprobs
                  ? {
                      content: [
                        {
                          token: 'answer',
                          logprob: -0.5,
                          top_logprobs: [{ token: 'answer', logprob: -0.5 }],
                        },
                      ],
                    }
                  : null,
                finish_reason: 'stop',
              },
        );
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ id: 'up', object: 'chat.completion', choices, usage }));
        return;
      }
      res.setHeader('content-type', 'text/event-stream');
      const send = (delta: unknown, finish: string | null = null) =>
        res.write(
          `data: ${JSON.stringify({ id: 'up', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`,
        );
      if (tool) {
        send({
          tool_calls: [
            { index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } },
          ],
        });
        send({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] });
        send({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] });
        send({}, 'tool_calls');
      } else {
        send({ content: 'plain' });
        send({ content: ' answer' });
        send({}, 'stop');
      }
      res.write(`data: ${JSON.stringify({ id: 'up', choices: [], usage })}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, {
    overrides: { ...gatewayOverrides, ROUTING_MAX_ATTEMPTS: 1, PRICE_PER_TOKEN_MICRO: PRICE },
  });
  upstream = await startUpstream();
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  agents = [
    newAgent(server, { runtime: new BuiltinRuntime({ tokenDelayMs: 5 }) }),
    newAgent(server, { models: [UPSTREAM_MODEL], runtime: new UpstreamRuntime(url) }),
    newAgent(server, {
      models: [OVERCLAIM_MODEL],
      // Claims far more output than asked for, and more choices than n.
      runtime: {
        name: 'overclaim',
        run: () =>
          Promise.resolve({
            tokensIn: 3,
            tokensOut: 1_000_000,
            output: 'a',
            finishReason: 'stop' as const,
            choices: [1, 2, 3, 4].map((i) => ({ output: `extra ${i}` })),
          }),
      },
    }),
  ];
  await bindNodes(
    server.backbone,
    agents.map((x) => x.address),
  );
  await Promise.all(agents.map((x) => x.start()));
  nsId = await fundedNamespace(server.backbone);
  apiKey = (await server.backbone.accounts.createApiKey({ namespaceId: nsId, name: 'surface' })).plaintext;
  // Both nodes are in the catalog before the first request.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const served = (await server.backbone.nodes.catalog.catalog('testnet')).filter((m) => m.onlineNodes > 0);
    if (served.length >= 3 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
});
afterAll(async () => {
  await Promise.all(agents.map((x) => x.stop()));
  await new Promise((r) => upstream?.close(r));
  await server?.stop();
  await stores?.drop();
});

const client = () => new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0, timeout: 20_000 });

/** The job's row: exact charge (the usage at the price) and the hold it was sized for. */
async function jobOf(jobId: string) {
  const found = await server.backbone.jobs.getJob(nsId, jobId);
  expect(found).toBeDefined();
  return found!.row;
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}/v1${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe('POST /v1/responses', () => {
  it('text: the response object, usage, and a charge of exactly the usage', async () => {
    const { data, response } = await client()
      .responses.create({
        model: MODEL,
        instructions: 'be brief',
        input: 'the quick brown fox',
        metadata: { t: '1' },
      })
      .withResponse();
    const jobId = response.headers.get('x-request-id')!;
    expect(data.id).toBe(`resp_${jobId.replaceAll('-', '')}`);
    expect(data.object).toBe('response');
    expect(data.status).toBe('completed');
    // The builtin runtime answers the prompt's words (instructions, then input) in reverse order.
    expect(data.output_text).toBe('fox brown quick the brief be');
    expect(data.output).toHaveLength(1);
    expect(data.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed' });
    expect(data.usage).toMatchObject({ input_tokens: 6, output_tokens: 6, total_tokens: 12 });
    expect(data).toMatchObject({ store: false, previous_response_id: null, metadata: { t: '1' } });
    const row = await jobOf(jobId);
    expect(row.cost).toBe(BigInt(12 * PRICE));
  });

  it('streaming: the client stream helper parses OpenAI event sequence; raw events are typed and numbered', async () => {
    const stream = client().responses.stream({ model: MODEL, input: 'one two three four' });
    const types: string[] = [];
    let deltas = '';
    for await (const e of stream) {
      types.push(e.type);
      if (e.type === 'response.output_text.delta') deltas += e.delta;
    }
    const final = await stream.finalResponse();
    expect(final.output).toEqual([
      expect.objectContaining({
        type: 'message',
        status: 'completed',
        content: [expect.objectContaining({ type: 'output_text', text: 'four three two one' })],
      }),
    ]);
    expect(deltas).toBe('four three two one');
    const deltaCount = types.filter((t) => t === 'response.output_text.delta').length;
    expect(deltaCount).toBe(4);
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array<string>(deltaCount).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(final.usage).toMatchObject({ input_tokens: 4, output_tokens: 4 });

    const raw = await post('/responses', { model: MODEL, input: 'alpha beta', stream: true });
    expect(raw.status).toBe(200);
    expect(raw.headers.get('content-type')).toContain('text/event-stream');
    const events = raw.text
      .trim()
      .split('\n\n')
      .map((block) => {
        const [eventLine, dataLine] = block.split('\n');
        const data = JSON.parse(dataLine!.slice('data: '.length)) as {
          type: string;
          sequence_number: number;
        };
        return { event: eventLine!.slice('event: '.length), data };
      });
    expect(events.every((e) => e.event === e.data.type)).toBe(true);
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
    const done = events.at(-1)!.data as unknown as {
      type: string;
      response: { id: string; output_text?: string };
    };
    expect(done.type).toBe('response.completed');
    const row = await jobOf(raw.headers.get('x-request-id')!);
    expect(row.cost).toBe(BigInt((2 + 2) * PRICE));
  });

  it('function tools: a call comes back as a function_call item (streamed and not), and its output goes back in', async () => {
    const tools = [
      {
        type: 'function' as const,
        name: 'get_weather',
        description: 'weather of a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } } },
        strict: false,
      },
    ];
    const r = await client().responses.create({ model: UPSTREAM_MODEL, input: 'weather in Paris?', tools });
    expect(r.output).toEqual([
      expect.objectContaining({
        type: 'function_call',
        call_id: 'call_1',
        name: 'get_weather',
        arguments: '{"city":"Paris"}',
      }),
    ]);
    expect(received.at(-1)!.tools).toEqual([
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'weather of a city',
          parameters: tools[0]!.parameters,
          strict: false,
        },
      },
    ]);

    const stream = client().responses.stream({ model: UPSTREAM_MODEL, input: 'weather in Paris?', tools });
    const args: string[] = [];
    for await (const e of stream) if (e.type === 'response.function_call_arguments.delta') args.push(e.delta);
    const final = await stream.finalResponse();
    expect(args).toEqual(['{"city":', '"Paris"}']);
    expect(final.output).toEqual([
      expect.objectContaining({
        type: 'function_call',
        call_id: 'call_1',
        arguments: '{"city":"Paris"}',
        status: 'completed',
      }),
    ]);

    await client().responses.create({
      model: UPSTREAM_MODEL,
      input: [
        { role: 'user', content: 'weather in Paris?' },
        { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call_output', call_id: 'call_1', output: 'sunny' },
      ],
    });
    expect(received.at(-1)!.messages).toEqual([
      { role: 'user', content: 'weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
    ]);
  });

  it('text.format json_schema and logprobs reach the node as response_format and logprobs', async () => {
    const schema = { type: 'object', properties: { a: { type: 'string' } } };
    // top_logprobs is an API field this client version does not type: a plain object passes it.
    const params = {
      model: UPSTREAM_MODEL,
      input: 'json please',
      text: { format: { type: 'json_schema', name: 'answer', schema, strict: true } },
      include: ['message.output_text.logprobs'],
      top_logprobs: 1,
      user: 'user-7',
      safety_identifier: 'sid-7',
    } as OpenAI.Responses.ResponseCreateParamsNonStreaming;
    const r = await client().responses.create(params);
    expect(received.at(-1)).toMatchObject({
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } },
      logprobs: true,
      top_logprobs: 1,
      user: 'user-7',
      safety_identifier: 'sid-7',
    });
    const part = (r.output[0] as { content: Array<{ logprobs: unknown[] }> }).content[0]!;
    expect(part.logprobs).toEqual([
      {
        token: 'answer',
        logprob: -0.5,
        bytes: [...Buffer.from('answer')],
        top_logprobs: [expect.objectContaining({ token: 'answer' })],
      },
    ]);
  });

  it('stateful and unsupported options are a 400 naming the field, and charge nothing', async () => {
    const before = await server.backbone.ledger.getBalance(nsId);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ previous_response_id: 'resp_1' }, 'previous_response_id'],
      [{ store: true }, 'store'],
      [{ conversation: 'conv_1' }, 'conversation'],
      [{ background: true }, 'background'],
      [{ tools: [{ type: 'web_search' }] }, 'tools.0.type'],
      [{ input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input.0.type'],
      [{ reasoning: { effort: 'low' } }, 'reasoning'],
      [{ stream: true, include: ['message.output_text.logprobs'] }, 'include'],
    ];
    for (const [extra, param] of cases) {
      const res = await post('/responses', { model: MODEL, input: 'hi', ...extra });
      expect(res.status, JSON.stringify(extra)).toBe(400);
      const error = (JSON.parse(res.text) as { error: { code: string; param: string; message: string } })
        .error;
      expect(error.code).toBe('invalid_request');
      expect(error.param, res.text).toBe(param);
      expect(error.message).toContain(param.split('.')[0]);
    }
    const unknown = await post('/responses', { model: MODEL, input: 'hi', frobnicate: 1 });
    expect(unknown.status).toBe(400);
    expect(unknown.text).toContain('frobnicate');
    const polled = await post('/responses', { model: MODEL, input: 'hi' }, { 'x-rty-mode': 'polling' });
    expect(polled.status).toBe(400);
    expect(polled.text).toContain('x-rty-mode: polling is not offered on /v1/responses');
    expect(await server.backbone.ledger.getBalance(nsId)).toEqual(before);
  });
});

describe('POST /v1/responses replays', () => {
  it('an Idempotency-Key replays the same response, charged once', async () => {
    const body = { model: MODEL, input: 'same twice' };
    const first = await post('/responses', body, { 'idempotency-key': 'resp-replay-1' });
    const before = await server.backbone.ledger.getBalance(nsId);
    const second = await post('/responses', body, { 'idempotency-key': 'resp-replay-1' });
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(JSON.parse(second.text)).toEqual(JSON.parse(first.text));
    expect(await server.backbone.ledger.getBalance(nsId)).toEqual(before);
  });
});

describe('chat completions: n, stop, seed, user, response_format, logprobs', () => {
  it('a node claiming more output than n x max_tokens, or more choices than n, is billed at the bound with n choices', async () => {
    const { data, response } = await client()
      .chat.completions.create({
        model: OVERCLAIM_MODEL,
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 20,
        n: 2,
      })
      .withResponse();
    expect(data.choices.map((c) => c.message.content)).toEqual(['a', 'extra 1']);
    // Each kept choice is bounded by its bytes (+2 for the end) and max_tokens: 'a' → 3, 'extra 1' → 9; the
    // claim of 1,000,000 is cut to 12, below the n × max_tokens = 40 ceiling (usage-bound.ts).
    expect(data.usage?.completion_tokens).toBe(12);
    const row = await jobOf(response.headers.get('x-request-id')!);
    expect(row.cost).toBe(BigInt((3 + 12) * PRICE));
  });

  it('n: 2 runs as one job on one node: two choices, usage over both, n x the output budget held, one charge', async () => {
    const body = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: 'red green blue' }],
      max_tokens: 50,
    };
    const { data, response } = await client()
      .chat.completions.create({ ...body, n: 2 })
      .withResponse();
    expect(data.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(data.choices.map((c) => c.message.content)).toEqual(['blue green red', 'green red blue']);
    expect(data.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 6 });
    const two = await jobOf(response.headers.get('x-request-id')!);
    expect(two.cost).toBe(BigInt((3 + 6) * PRICE));
    const one = await client().chat.completions.create(body).withResponse();
    const single = await jobOf(one.response.headers.get('x-request-id')!);
    expect(two.maxCost - single.maxCost).toBe(BigInt(50 * PRICE));
    expect(one.data.choices).toHaveLength(1);
  });

  it('stop, seed, user and response_format reach the upstream; the builtin runtime honours stop', async () => {
    await client().chat.completions.create({
      model: UPSTREAM_MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      stop: ['\n\n'],
      seed: 42,
      user: 'u-1',
      response_format: { type: 'json_object' },
      n: 2,
    });
    expect(received.at(-1)).toMatchObject({
      stop: ['\n\n'],
      seed: 42,
      user: 'u-1',
      response_format: { type: 'json_object' },
      n: 2,
    });
    const cut = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'one two three four' }],
      stop: 'two',
      seed: 7,
    });
    expect(cut.choices[0]!.message.content).toBe('four three');
    expect(cut.choices[0]!.finish_reason).toBe('stop');
    expect(cut.usage?.completion_tokens).toBe(2);
  });

  it('a runtime that cannot honour response_format json_schema fails the job with a clear error, refunded', async () => {
    const before = await server.backbone.ledger.getBalance(nsId);
    const err = await client()
      .chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'hi' }],
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).message).toContain(
      'cannot honour response_format json_schema',
    );
    expect(await server.backbone.ledger.getBalance(nsId)).toEqual(before);
  });

  it('logprobs and top_logprobs come back per token (chat), and as parallel arrays (completions)', async () => {
    const chat = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'x y' }],
      logprobs: true,
      top_logprobs: 2,
    });
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content.map((t) => t.token)).toEqual(['y', ' x']);
    expect(content[0]).toMatchObject({ logprob: -0.1, bytes: [121] });
    expect(content[0]!.top_logprobs).toHaveLength(2);
    const completion = await client().completions.create({ model: MODEL, prompt: 'x y', logprobs: 1 });
    expect(completion.choices[0]!.logprobs).toMatchObject({
      tokens: ['y', ' x'],
      token_logprobs: [-0.1, -0.2],
      text_offset: [0, 1],
    });
  });

  it('fields whose output cannot come back are a 400 naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ audio: { voice: 'alloy', format: 'mp3' } }, 'audio'],
      [{ modalities: ['text', 'audio'] }, 'modalities.1'],
      [{ store: true }, 'store'],
      [{ functions: [{ name: 'f' }] }, 'functions'],
      [{ top_logprobs: 2 }, 'top_logprobs'],
      [{ n: 9 }, 'n'],
    ];
    for (const [extra, param] of cases) {
      const res = await post('/chat/completions', {
        model: MODEL,
        messages: [{ role: 'user', content: 'hi' }],
        ...extra,
      });
      expect(res.status, JSON.stringify(extra)).toBe(400);
      expect((JSON.parse(res.text) as { error: { param: string } }).error.param, res.text).toBe(param);
    }
  });

  it('after the run: every DESIGN.md invariant holds (no credit created or lost, reserved = 0)', async () => {
    const b = server.backbone;
    const checks = await waitForInvariants(
      {
        pool: b.pool,
        ledger: b.ledger,
        redis: b.redis,
        redisPrefix: b.config.REDIS_KEY_PREFIX,
        namespaceIds: [nsId],
        mongo: b.mongo.db,
      },
      { timeoutMs: 10_000 },
    );
    expect(checks.filter((c) => !c.ok)).toEqual([]);
  });
});
