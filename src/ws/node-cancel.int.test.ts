// Cancellation and usage bounds end to end, through real node agents on the WebSocket gateway, the official
// `openai` client and raw HTTP: a streaming client that disconnects (on the node's process, and on another one:
// the cancel crosses over Redis pub/sub), POST /v1/jobs/:id/cancel of a running job, a non-streamed sync
// request under each disconnect policy, and nodes that over-claim usage or answer past max_tokens. Each
// checks what the node was told, the charge, the node's earning, and that every DESIGN.md invariant holds.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import { bindNodes, fundedNamespace, gatewayOverrides, MODEL, newAgent } from '../../test/gateway-harness.js';
import { waitFor } from '../../test/routing-fixtures.js';
import { checkInvariants } from '../cli/invariants.js';
import type { RunningServer } from '../app/serve.js';
import type { NodeAgent } from '../agent/node-agent.js';
import { BuiltinRuntime, type NodeRuntime } from '../agent/node-runtime.js';
import { promptTokenBound } from '../modules/jobs/index.js';
import { CANCEL_GRACE_MS } from './node-session.js';

const LIAR_MODEL = 'liar-model';
const LONG_MODEL = 'long-model';
const STUBBORN_MODEL = 'stubborn-model';
const PRICE = 20n; // PRICE_PER_TOKEN_MICRO's default
const SHARE = 80n; // NODE_SHARE_PERCENT's default
const TOKEN_DELAY_MS = 150;

let stores: TestStores;
let a: RunningServer;
let b: RunningServer;
let slow: NodeAgent;
let liar: NodeAgent;
let long: NodeAgent;
let stubborn: NodeAgent;
let apiKey: string;
let nsId: string;
/** Deltas each job's node sent (by job id). */
const sent = new Map<string, number>();

/** Claims the largest usage the protocol takes for a short answer. */
const liarRuntime: NodeRuntime = {
  name: 'liar',
  run: () =>
    Promise.resolve({
      tokensIn: 2_147_483_647,
      tokensOut: 2_147_483_647,
      output: 'short answer',
      finishReason: 'stop',
    }),
};
/** A 250,000-character answer, whatever max_tokens says. */
const longRuntime: NodeRuntime = {
  name: 'long',
  run: (_model, _request, opts = {}) => {
    opts.onDelta?.({ text: 'x'.repeat(250_000) });
    return Promise.resolve({ tokensIn: 3, tokensOut: 10, output: 'x'.repeat(250_000), finishReason: 'stop' });
  },
};
/** Streams three words, then ignores the cancel (answers only after the gateway's grace). */
const stubbornRuntime: NodeRuntime = {
  name: 'stubborn',
  run: async (_model, _request, opts = {}) => {
    for (const w of ['a', ' b', ' c']) {
      opts.onDelta?.({ text: w });
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, CANCEL_GRACE_MS + 2_000));
    return { tokensIn: 1, tokensOut: 3, output: 'a b c', finishReason: 'stop' };
  },
};

beforeAll(async () => {
  stores = await createTestStores();
  const overrides = { ...gatewayOverrides, ROUTING_MAX_ATTEMPTS: 1 };
  a = await startTestServer(stores, { overrides });
  // A Cloud-only process: its clients' nodes are connected to `a`, so their cancels cross over Redis.
  b = await startTestServer(stores, { roles: 'cloud', overrides });
  slow = newAgent(a, {
    runtime: new BuiltinRuntime({ tokenDelayMs: TOKEN_DELAY_MS }),
    onDelta: (d) => sent.set(d.jobId, (sent.get(d.jobId) ?? 0) + 1),
  });
  liar = newAgent(a, { models: [LIAR_MODEL], runtime: liarRuntime });
  long = newAgent(a, { models: [LONG_MODEL], runtime: longRuntime });
  stubborn = newAgent(a, { models: [STUBBORN_MODEL], runtime: stubbornRuntime });
  const agents = [slow, liar, long, stubborn];
  await bindNodes(
    a.backbone,
    agents.map((x) => x.address),
  );
  await Promise.all(agents.map((x) => x.start()));
  nsId = await fundedNamespace(a.backbone);
  apiKey = (await a.backbone.accounts.createApiKey({ namespaceId: nsId, name: 'cancel' })).plaintext;
});
afterAll(async () => {
  await Promise.all([slow, liar, long, stubborn].map((x) => x?.stop()));
  await b?.stop();
  await a?.stop();
  await stores?.drop();
});

const client = (s: RunningServer = a) =>
  new OpenAI({ baseURL: `${s.url}/v1`, apiKey, maxRetries: 0, timeout: 20_000 });

const TEN_WORDS = 'w1 w2 w3 w4 w5 w6 w7 w8 w9 w10';

interface Settled {
  status: string;
  cost: bigint;
  tokensIn: number;
  tokensOut: number;
  earning: bigint;
  node: string | null;
}

/** The job's row once terminal, with the node's earning entry for it. */
async function settled(jobId: string): Promise<Settled> {
  const pool = a.backbone.pool;
  let row:
    | {
        status: string;
        cost: string | null;
        tokens_in: number;
        tokens_out: number;
        node_address: string | null;
      }
    | undefined;
  await waitFor(
    `job ${jobId} terminal`,
    async () => {
      const r = await pool.query<NonNullable<typeof row>>(
        'select status, cost, tokens_in, tokens_out, node_address from jobs where id = $1',
        [jobId],
      );
      row = r.rows[0];
      return row !== undefined && row.status !== 'queued' && row.status !== 'dispatched';
    },
    15_000,
  );
  const e = await pool.query<{ amount: string }>(
    "select amount from ledger_entries where job_id = $1 and kind = 'earning'",
    [jobId],
  );
  return {
    status: row!.status,
    cost: BigInt(row!.cost ?? 0),
    tokensIn: row!.tokens_in,
    tokensOut: row!.tokens_out,
    earning: e.rows.reduce((n, x) => n + BigInt(x.amount), 0n),
    node: row!.node_address,
  };
}

/** Streams a chat, reads `chunks` content chunks, then drops the connection (an AbortController). */
async function streamThenLeave(
  server: RunningServer,
  chunks: number,
  model = MODEL,
): Promise<{ jobId: string; text: string }> {
  const ac = new AbortController();
  const stream = await client(server).chat.completions.create(
    { model, messages: [{ role: 'user', content: TEN_WORDS }], stream: true },
    { signal: ac.signal },
  );
  let text = '';
  let jobId = '';
  let seen = 0;
  await (async () => {
    for await (const c of stream) {
      jobId = c.id.replace(/^chatcmpl-/, '');
      const d = c.choices[0]?.delta.content;
      if (!d) continue;
      text += d;
      seen += 1;
      if (seen === chunks) ac.abort();
    }
  })().catch((e: unknown) => {
    if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
  });
  return { jobId, text };
}

async function penaltyOf(agent: NodeAgent): Promise<number> {
  return Number((await a.backbone.nodes.live.readNode('testnet', agent.address)).pen ?? 0);
}

async function expectInvariants(): Promise<void> {
  const bb = a.backbone;
  const checks = await checkInvariants({
    pool: bb.pool,
    ledger: bb.ledger,
    redis: bb.redis,
    redisPrefix: bb.config.REDIS_KEY_PREFIX,
    namespaceIds: [nsId],
  });
  expect(checks.filter((c) => !c.ok)).toEqual([]);
}

describe('cancellation', () => {
  it.each([
    ['on the node’s process', () => a],
    ['on another process (the cancel crosses over Redis)', () => b],
  ])(
    'a streaming client that disconnects %s: the node is told to stop; charged prompt + delivered deltas; the node earns its share',
    async (_where, server) => {
      const { jobId, text } = await streamThenLeave(server(), 3);
      expect(text).toBe('w10 w9 w8');
      const job = await settled(jobId);
      // The node got the cancel and stopped before its tenth word.
      await waitFor('the node stopped at the cancel', () => slow.cancelledJobs.includes(jobId), 5_000);
      expect(sent.get(jobId)).toBeLessThan(10);
      // Charged exactly for the prompt (the node's 10 words) and the 3 words the client received.
      expect(job).toMatchObject({ status: 'cancelled', tokensIn: 10, tokensOut: 3, node: slow.address });
      expect(job.cost).toBe(13n * PRICE);
      expect(job.earning).toBe((13n * PRICE * SHARE) / 100n);
      const result = await a.backbone.jobs.getResult(nsId, jobId);
      expect(result).toMatchObject({ status: 'cancelled', output: { text: 'w10 w9 w8' }, costMicro: '260' });
      await expectInvariants();
    },
  );

  it('POST /v1/jobs/:id/cancel of a running job: stopped on its node, charged for what it produced, shown as its result', async () => {
    const res = await fetch(`${b.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${apiKey}`,
        'content-type': 'application/json',
        'x-rty-mode': 'polling',
      },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: TEN_WORDS }] }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await waitFor('the job on its node', () => slow.jobFrames.some((f) => f.jobId === id), 5_000);
    await new Promise((r) => setTimeout(r, TOKEN_DELAY_MS * 3.5));
    const cancelled = await fetch(`${b.url}/v1/jobs/${id}/cancel`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(cancelled.status).toBe(200);
    const body = (await cancelled.json()) as {
      status: string;
      cost_micro: string;
      result: { choices: Array<{ message: { content: string } }>; usage: { completion_tokens: number } };
      error: { code: string };
    };
    expect(body.status).toBe('cancelled');
    expect(body.error.code).toBe('job_cancelled');
    const job = await settled(id);
    const words = body.result.choices[0]!.message.content.split(' ');
    // Stopped part-way: some words, not all ten; charged for the prompt and exactly those words.
    expect(job.tokensOut).toBe(words.length);
    expect(job.tokensOut).toBeGreaterThan(0);
    expect(job.tokensOut).toBeLessThan(10);
    expect(body.result.usage.completion_tokens).toBe(job.tokensOut);
    expect(job.cost).toBe(BigInt(10 + job.tokensOut) * PRICE);
    expect(body.cost_micro).toBe(job.cost.toString());
    expect(job.earning).toBe((job.cost * SHARE) / 100n);
    expect(slow.cancelledJobs).toContain(id);
    await expectInvariants();
  });

  it('POST cancel of a stream whose client still reads: its stream ends with what it is charged for, and the usage', async () => {
    const stream = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: TEN_WORDS }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let jobId = '';
    let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
    let cancel: Promise<Response> | undefined;
    for await (const c of stream) {
      jobId = c.id.replace(/^chatcmpl-/, '');
      text += c.choices[0]?.delta.content ?? '';
      usage = c.usage ?? usage;
      if (!cancel && text.split(' ').length >= 2)
        cancel = fetch(`${a.url}/v1/jobs/${jobId}/cancel`, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}` },
        });
    }
    expect((await cancel!).status).toBe(200);
    const job = await settled(jobId);
    const words = text.split(' ').length;
    expect(words).toBeLessThan(10);
    expect(job).toMatchObject({ status: 'cancelled', tokensIn: 10, tokensOut: words });
    expect(usage).toMatchObject({ prompt_tokens: 10, completion_tokens: words });
    expect(job.cost).toBe(BigInt(10 + words) * PRICE);
    expect(job.earning).toBe((job.cost * SHARE) / 100n);
    await expectInvariants();
  });

  it('a non-streamed sync client that disconnects: runs on and is charged by default, stopped with X-Rty-On-Disconnect: cancel', async () => {
    const leave = async (headers: Record<string, string>) => {
      const before = slow.jobFrames.length;
      const ac = new AbortController();
      const req = fetch(`${a.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: TEN_WORDS }] }),
        signal: ac.signal,
      }).catch(() => undefined);
      await waitFor('the job on its node', () => slow.jobFrames.length > before, 5_000);
      const jobId = slow.jobFrames.at(-1)!.jobId;
      await new Promise((r) => setTimeout(r, TOKEN_DELAY_MS * 2));
      ac.abort();
      await req;
      return settled(jobId);
    };
    const kept = await leave({});
    expect(kept).toMatchObject({ status: 'succeeded', tokensIn: 10, tokensOut: 10 });
    expect(kept.cost).toBe(20n * PRICE);
    // Cancelled: nothing reached the client, so only the prompt is charged.
    const stopped = await leave({ 'x-rty-on-disconnect': 'cancel' });
    expect(stopped).toMatchObject({ status: 'cancelled', tokensIn: 10, tokensOut: 0 });
    expect(stopped.cost).toBe(10n * PRICE);
    expect(stopped.earning).toBe((10n * PRICE * SHARE) / 100n);
    await expectInvariants();
  });

  it('a node that ignores the cancel is cut after the grace: charged the delivered output only, penalized', async () => {
    const before = await penaltyOf(stubborn);
    const { jobId, text } = await streamThenLeave(a, 2, STUBBORN_MODEL);
    expect(text).toBe('a b');
    const job = await settled(jobId);
    // No answer, so no prompt count of the node's: the client pays the two words it got, the node its share.
    expect(job).toMatchObject({ status: 'cancelled', tokensIn: 0, tokensOut: 2, node: stubborn.address });
    expect(job.cost).toBe(2n * PRICE);
    expect(job.earning).toBe((2n * PRICE * SHARE) / 100n);
    expect(await penaltyOf(stubborn)).toBeGreaterThan(before);
    await expectInvariants();
  });

  it('cancelling a job that already finished changes nothing', async () => {
    const r = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'x' }],
    });
    const jobId = r.id.replace(/^chatcmpl-/, '');
    const before = await settled(jobId);
    expect(await a.backbone.jobs.interrupt(nsId, jobId, { reason: 'too late' })).toBe('succeeded');
    expect(await settled(jobId)).toEqual(before);
  });
});

describe('usage a node cannot inflate', () => {
  it('a node claiming 2^31−1 tokens is billed at the bounds (prompt bound, max_tokens, output bytes) and penalized', async () => {
    const before = await penaltyOf(liar);
    const messages = [{ role: 'user' as const, content: 'how much?' }];
    const r = await client().chat.completions.create({ model: LIAR_MODEL, messages, max_tokens: 50 });
    expect(r.choices[0]!.message.content).toBe('short answer');
    const bound = promptTokenBound({
      kind: 'chat',
      body: { model: LIAR_MODEL, messages, max_tokens: 50 },
      maxTokens: 50,
    });
    // 'short answer' is 12 bytes: at most 12 tokens + the end allowance (2), below max_tokens 50.
    expect(r.usage).toMatchObject({ prompt_tokens: bound, completion_tokens: 14 });
    const job = await settled(r.id.replace(/^chatcmpl-/, ''));
    // Never above the hold either (the reservation, sized from the request before it ran).
    const hold = await a.backbone.pool.query<{ max_cost: string }>(
      'select max_cost from jobs where id = $1',
      [r.id.replace(/^chatcmpl-/, '')],
    );
    const maxCost = BigInt(hold.rows[0]!.max_cost);
    const atBound = BigInt(bound + 14) * PRICE;
    expect(job.cost).toBe(atBound < maxCost ? atBound : maxCost);
    expect(job.cost).toBeLessThan(2_147_483_647n);
    expect(job.earning).toBe((job.cost * SHARE) / 100n);
    expect(await penaltyOf(liar)).toBeGreaterThan(before);
    await expectInvariants();
  });

  it('a 250,000-character answer to max_tokens 10 is refused: the job fails and is refunded, the node penalized', async () => {
    const before = await penaltyOf(long);
    const err = await client()
      .chat.completions.create({
        model: LONG_MODEL,
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 10,
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).message).toMatch(
      /more than max_tokens 10 can produce/,
    );
    const jobId = long.jobFrames.at(-1)!.jobId;
    const job = await settled(jobId);
    expect(job).toMatchObject({ status: 'failed', cost: 0n, earning: 0n });
    expect(await penaltyOf(long)).toBeGreaterThan(before);
    await expectInvariants();
  });

  it('a streamed answer past what max_tokens allows is stopped at that delta: never forwarded, refunded, penalized', async () => {
    const before = await penaltyOf(long);
    const stream = await client().chat.completions.create({
      model: LONG_MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 10,
      stream: true,
    });
    let text = '';
    const err = await (async () => {
      for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    })().catch((e: unknown) => e);
    expect(text).toBe('');
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const job = await settled(long.jobFrames.at(-1)!.jobId);
    expect(job).toMatchObject({ cost: 0n, earning: 0n });
    expect(['cancelled', 'failed']).toContain(job.status);
    expect(await penaltyOf(long)).toBeGreaterThan(before);
    await expectInvariants();
  });
});
