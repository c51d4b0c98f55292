// `stream: true` with `n > 1` and `logprobs` on chat completions, through real node agents (the builtin runtime,
// and the upstream runtime on a loopback OpenAI-compatible server that streams n interleaved choices with
// logprobs, as vLLM does) and the official `openai` client's stream helper: chunks per choice index, logprobs in
// the chunks, the final usage chunk, charged as one job. Legacy completions still refuse both with a 400.
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
const PRICE = 10;

let stores: TestStores;
let server: RunningServer;
let upstream: Server;
let agents: NodeAgent[] = [];
let nsId: string;
let apiKey: string;
const received: Array<Record<string, unknown>> = [];

/** Streams n choices interleaved, one choice per chunk (role chunks first), logprobs per token when asked. */
function startUpstream(): Promise<Server> {
  const srv = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as Record<string, unknown>;
      received.push(body);
      const n = typeof body.n === 'number' ? body.n : 1;
      res.setHeader('content-type', 'text/event-stream');
      const send = (index: number, delta: unknown, finish: string | null = null, logprobs: unknown = null) =>
        res.write(
          `data: ${JSON.stringify({ id: 'up', choices: [{ index, delta, logprobs, finish_reason: finish }] })}\n\n`,
        );
      const lp = (token: string) =>
        body.logprobs
          ? { content: [{ token, logprob: -0.25, top_logprobs: [{ token, logprob: -0.25 }] }] }
          : null;
      for (let i = 0; i < n; i += 1) send(i, { role: 'assistant', content: '' });
      for (const word of ['streamed', ' answer'])
        for (let i = 0; i < n; i += 1) send(i, { content: `${word}${i > 0 ? i : ''}` }, null, lp(word));
      for (let i = 0; i < n; i += 1) send(i, {}, 'stop');
      const usage = { prompt_tokens: 7, completion_tokens: 2 * n, total_tokens: 7 + 2 * n };
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
  ];
  await bindNodes(
    server.backbone,
    agents.map((x) => x.address),
  );
  await Promise.all(agents.map((x) => x.start()));
  nsId = await fundedNamespace(server.backbone);
  apiKey = (await server.backbone.accounts.createApiKey({ namespaceId: nsId, name: 'choices' })).plaintext;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const served = (await server.backbone.nodes.catalog.catalog('testnet')).filter((m) => m.onlineNodes > 0);
    if (served.length >= 2 || Date.now() > deadline) break;
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

describe('chat stream: n > 1 and logprobs', () => {
  it.each([
    [
      UPSTREAM_MODEL,
      ['streamed answer', 'streamed1 answer1'],
      [
        ['streamed', ' answer'],
        ['streamed', ' answer'],
      ],
    ],
    [
      MODEL,
      ['blue green red', 'green red blue'],
      [
        ['blue', ' green', ' red'],
        ['green', ' red', ' blue'],
      ],
    ],
  ])(
    '%s: chunks per choice index with logprobs; the stream helper assembles both choices',
    async (model, texts, tokens) => {
      const stream = client().chat.completions.stream({
        model,
        messages: [{ role: 'user', content: 'red green blue' }],
        n: 2,
        logprobs: true,
        top_logprobs: 1,
        stream_options: { include_usage: true },
      });
      const indices = new Set<number>();
      let usageChunks = 0;
      stream.on('chunk', (c) => {
        c.choices.forEach((x) => indices.add(x.index));
        if (c.choices.length === 0 && c.usage) usageChunks += 1;
      });
      const final = await stream.finalChatCompletion();
      expect([...indices].sort()).toEqual([0, 1]);
      expect(usageChunks).toBe(1);
      expect(final.choices.map((c) => c.message.content)).toEqual(texts);
      expect(final.choices.map((c) => c.finish_reason)).toEqual(['stop', 'stop']);
      expect(final.choices.map((c) => c.logprobs?.content?.map((t) => t.token))).toEqual(tokens);
      expect(final.choices[1]!.logprobs!.content![0]!.top_logprobs).toHaveLength(1);
      // One job, charged its usage over both choices.
      const job = await server.backbone.jobs.getJob(nsId, final.id.replace(/^chatcmpl-/, ''));
      const u = final.usage!;
      expect(u.completion_tokens).toBeGreaterThan(0);
      expect(job?.row.cost).toBe(BigInt((u.prompt_tokens + u.completion_tokens) * PRICE));
      if (model === UPSTREAM_MODEL)
        expect(received.at(-1)).toMatchObject({ stream: true, n: 2, logprobs: true });
    },
  );

  it('legacy completions still refuse n > 1 and logprobs with stream: true (400 naming the field)', async () => {
    for (const [extra, param] of [
      [{ n: 2 }, 'n'],
      [{ logprobs: 1 }, 'logprobs'],
    ] as const) {
      const res = await fetch(`${server.url}/v1/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, prompt: 'hi', stream: true, ...extra }),
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { param: string } }).error.param).toBe(param);
    }
  });

  it('after the run: every DESIGN.md invariant holds (reserved = 0)', async () => {
    const b = server.backbone;
    const checks = await waitForInvariants(
      {
        pool: b.pool,
        ledger: b.ledger,
        redis: b.redis,
        redisPrefix: b.config.REDIS_KEY_PREFIX,
        namespaceIds: [nsId],
      },
      { timeoutMs: 10_000 },
    );
    expect(checks.filter((c) => !c.ok)).toEqual([]);
  });
});
