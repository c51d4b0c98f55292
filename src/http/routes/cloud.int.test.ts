// The Cloud API through the official `openai` client over real HTTP, on a backbone with all four real stores;
// nodes run in process (the WebSocket gateway has its own tests). Every status of the error table is driven.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import { heartbeat, openSessions, randomAddress } from '../../../test/live-harness.js';
import type { NodeExecutor, NodeResult } from '../../modules/jobs/index.js';
import type { RunningServer } from '../../app/serve.js';
import { waitForInvariants } from '../../cli/invariants.js';

const embeddingOf = (text: string) => [text.length / 10, 0.5, -0.25];

const executor: NodeExecutor = {
  async run(_lease, job, signal): Promise<NodeResult> {
    const body = job.request?.body ?? {};
    if (job.model === 'slow-model')
      await new Promise((r, reject) => {
        const t = setTimeout(r, 5_000);
        signal.addEventListener('abort', () => (clearTimeout(t), reject(new Error('aborted'))), {
          once: true,
        });
      });
    if (job.request?.kind === 'embedding') {
      const inputs = Array.isArray(body.input) ? (body.input as string[]) : [String(body.input)];
      return { tokensIn: inputs.length * 3, tokensOut: 0, output: '', embeddings: inputs.map(embeddingOf) };
    }
    const text =
      job.request?.kind === 'chat'
        ? (body.messages as Array<{ content: string }>).map((m) => m.content).join(' ')
        : String(body.prompt);
    return {
      tokensIn: text.split(/\s+/).length,
      tokensOut: 3,
      output: `echo: ${text}`,
      finishReason: 'stop',
    };
  },
};

let stores: TestStores;
let server: RunningServer;
let client: OpenAI;
let nsId: string;
let keyPlain: string;

async function newNamespace(credits: bigint, key: { rateLimitPerS?: number; burst?: number } = {}) {
  const b = server.backbone;
  const account = await b.accounts.createAccount({
    email: `${Math.random().toString(36).slice(2)}@test.example`,
  });
  const ns = await b.accounts.createNamespace({ accountId: account.id, name: 'cloud' });
  if (credits > 0n) await b.ledger.topUp(ns.id, credits, `seed-${ns.id}`);
  const k = await b.accounts.createApiKey({ namespaceId: ns.id, name: 'k', ...key });
  return { ns, key: k };
}

const clientFor = (apiKey: string) =>
  new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0, timeout: 20_000 });

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, {
    roles: 'cloud,io,workers',
    executor,
    overrides: {
      RECORDS_CONSUMER_BATCH_MAX_WAIT_MS: 20,
      JOB_SYNC_TIMEOUT_MS: 1_500,
      HTTP_BODY_LIMIT_BYTES: 64 * 1024,
      PRICE_PER_TOKEN_MICRO: 10,
    },
  });
  const b = server.backbone;
  const account = await b.accounts.createAccount({ email: 'operator@test.example' });
  for (const model of ['llama3-8b', 'embed-small', 'slow-model']) {
    const address = randomAddress();
    await b.nodes.admin.registerNode({ address, environment: 'testnet', accountId: account.id });
    await openSessions(b.nodes, [{ address, environment: 'testnet' }]);
    await b.nodes.presence.ingest(
      heartbeat(address, {
        environment: 'testnet',
        models: [{ name: model, version: 'v1', active: true }],
        capacity: 8,
      }),
    );
  }
  const first = await newNamespace(10_000_000n);
  nsId = first.ns.id;
  keyPlain = first.key.plaintext;
  client = clientFor(keyPlain);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

describe('Cloud API with the official openai client', () => {
  it('lists only models served by an online node', async () => {
    const models = await client.models.list();
    const ids = models.data.map((m) => m.id).sort();
    expect(ids).toEqual(['embed-small', 'llama3-8b', 'slow-model']);
  });

  it('chat completion (sync) returns the node output and usage, and charges exactly the usage', async () => {
    const before = await server.backbone.ledger.getBalance(nsId);
    const r = await client.chat.completions.create({
      model: 'llama3-8b',
      messages: [{ role: 'user', content: 'hello there world' }],
      max_tokens: 16,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0]!.message.content).toBe('echo: hello there world');
    expect(r.usage).toEqual({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });
    const after = await server.backbone.ledger.getBalance(nsId);
    expect(before!.available - after!.available).toBe(60n); // 6 tokens × 10 micro-credits
    expect(after!.reserved).toBe(0n);
  });

  it('text completion and embeddings (the client asks for base64 and decodes it)', async () => {
    const c = await client.completions.create({ model: 'llama3-8b', prompt: 'one two', max_tokens: 8 });
    expect(c.choices[0]!.text).toBe('echo: one two');
    const e = await client.embeddings.create({ model: 'embed-small', input: ['abcd', 'abcdefgh'] });
    expect(e.data).toHaveLength(2);
    expect(e.data[1]!.embedding.map((x) => Math.round(x * 1000) / 1000)).toEqual([0.8, 0.5, -0.25]);
    const f = await client.embeddings.create({
      model: 'embed-small',
      input: 'abcd',
      encoding_format: 'float',
    });
    expect(f.data[0]!.embedding[1]).toBe(0.5);
  });

  it('chat as server-sent events', async () => {
    const stream = await client.chat.completions.create({
      model: 'llama3-8b',
      messages: [{ role: 'user', content: 'stream me' }],
      stream: true,
    });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe('echo: stream me');
    expect(finish).toBe('stop');
  });

  it('polling mode returns 202 with the job id at once; the status endpoint returns state and result', async () => {
    const { data, response } = await client.chat.completions
      .create(
        { model: 'llama3-8b', messages: [{ role: 'user', content: 'poll me' }] },
        { headers: { 'x-rty-mode': 'polling' } },
      )
      .withResponse();
    expect(response.status).toBe(202);
    const id = (data as unknown as { id: string }).id;
    expect(response.headers.get('x-request-id')).toBe(id);
    let job: { status: string; result?: { choices: Array<{ message: { content: string } }> } } | undefined;
    for (let i = 0; i < 100; i++) {
      job = await client.get<typeof job>(`/jobs/${id}`);
      if (job?.status === 'succeeded') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(job?.status).toBe('succeeded');
    expect(job?.result?.choices[0]?.message.content).toBe('echo: poll me');
  });

  it('an Idempotency-Key makes a retried submission return the first job (one job row, one hold)', async () => {
    const opts = { headers: { 'idempotency-key': 'retry-me-1' } };
    const body = { model: 'llama3-8b', messages: [{ role: 'user' as const, content: 'only once' }] };
    const a = await client.chat.completions.create(body, opts).withResponse();
    const b = await client.chat.completions.create(body, opts).withResponse();
    expect(b.data.id).toBe(a.data.id);
    expect(b.response.headers.get('idempotent-replayed')).toBe('true');
    const jobId = a.response.headers.get('x-request-id')!;
    const rows = await server.backbone.pool.query('select count(*)::int as n from jobs where id = $1', [
      jobId,
    ]);
    const holds = await server.backbone.pool.query(
      'select count(*)::int as n from credit_holds where job_id = $1',
      [jobId],
    );
    expect([rows.rows[0].n, holds.rows[0].n]).toEqual([1, 1]);
  });

  it('the same Idempotency-Key sent five times at once makes one job', async () => {
    const body = { model: 'llama3-8b', messages: [{ role: 'user' as const, content: 'at once' }] };
    const all = await Promise.all(
      Array.from({ length: 5 }, () =>
        client.chat.completions
          .create(body, { headers: { 'idempotency-key': 'concurrent-1' } })
          .withResponse(),
      ),
    );
    const ids = new Set(all.map((r) => r.response.headers.get('x-request-id')));
    expect(ids.size).toBe(1);
    const rows = await server.backbone.pool.query('select count(*)::int as n from jobs where id = $1', [
      [...ids][0],
    ]);
    expect(rows.rows[0].n).toBe(1);
  });

  it('sync timeout → 504, the job is cancelled and refunded in full', async () => {
    const before = await server.backbone.ledger.getBalance(nsId);
    const err = await client.chat.completions
      .create({ model: 'slow-model', messages: [{ role: 'user', content: 'too slow' }] })
      .withResponse()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(504);
    const after = await server.backbone.ledger.getBalance(nsId);
    expect(after!.available).toBe(before!.available);
    expect(after!.reserved).toBe(0n);
    const cancelled = await server.backbone.pool.query(
      "select count(*)::int as n from jobs where namespace_id = $1 and model = 'slow-model' and status = 'cancelled' and cost = 0",
      [nsId],
    );
    expect(cancelled.rows[0].n).toBe(1);
  });
});

describe('Cloud API errors: each bad input gets its status and leaves nothing behind', () => {
  const jobsOf = async (namespaceId: string) =>
    (
      await server.backbone.pool.query('select count(*)::int as n from jobs where namespace_id = $1', [
        namespaceId,
      ])
    ).rows[0].n as number;
  const raw = (path: string, init: RequestInit & { key?: string } = {}) =>
    fetch(`${server.url}${path}`, {
      method: 'POST',
      ...init,
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${init.key ?? keyPlain}`,
        ...init.headers,
      },
    });

  it('401 for a missing, malformed, unknown or revoked key', async () => {
    await expect(clientFor('sk-nope').models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const { ns, key } = await newNamespace(1_000_000n);
    await server.backbone.keyCache.revoke(ns.id, key.key.id);
    await expect(
      clientFor(key.plaintext).chat.completions.create({
        model: 'llama3-8b',
        messages: [{ role: 'user', content: 'x' }],
      }),
    ).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect(await jobsOf(ns.id)).toBe(0);
  });

  it('400 for malformed JSON and wrong types; 413 for an oversize body; 404 for an unknown model', async () => {
    const before = await jobsOf(nsId);
    const malformed = await raw('/v1/chat/completions', { body: '{"model": "llama3-8b", "messages": [' });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
    const wrong = await raw('/v1/chat/completions', {
      body: JSON.stringify({ model: 'llama3-8b', messages: 'hi' }),
    });
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { error: { param: string } }).error.param).toBe('messages');
    const big = await raw('/v1/completions', {
      body: JSON.stringify({ model: 'llama3-8b', prompt: 'x'.repeat(100 * 1024) }),
    });
    expect(big.status).toBe(413);
    await expect(
      client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect(await jobsOf(nsId)).toBe(before);
  });

  it('402 when the namespace cannot cover the maximum cost; nothing reserved', async () => {
    const { ns, key } = await newNamespace(100n);
    const err = await clientFor(key.plaintext)
      .chat.completions.create({
        model: 'llama3-8b',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 1000,
      })
      .catch((e: unknown) => e);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(402);
    const bal = await server.backbone.ledger.getBalance(ns.id);
    expect([bal!.available, bal!.reserved]).toEqual([100n, 0n]);
    expect(await jobsOf(ns.id)).toBe(0);
  });

  it('429 with Retry-After and rate-limit headers once the key bucket is empty', async () => {
    const { key } = await newNamespace(1_000_000n, { rateLimitPerS: 1, burst: 2 });
    const c = clientFor(key.plaintext);
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 4; i++) {
      const r = await c.models
        .list()
        .withResponse()
        .then(
          (x) => x.response,
          (e: InstanceType<typeof OpenAI.APIError>) => {
            retryAfter = e.headers?.get('retry-after') ?? null;
            return { status: e.status ?? 0 };
          },
        );
      statuses.push(r.status);
    }
    expect(statuses.slice(0, 2)).toEqual([200, 200]);
    expect(statuses).toContain(429);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
  });

  it("404 for another namespace's job (indistinguishable from a missing one)", async () => {
    const { data } = await client.chat.completions
      .create(
        { model: 'llama3-8b', messages: [{ role: 'user', content: 'mine' }] },
        { headers: { 'x-rty-mode': 'polling' } },
      )
      .withResponse();
    const id = (data as unknown as { id: string }).id;
    const other = await newNamespace(1_000_000n);
    await expect(clientFor(other.key.plaintext).get(`/jobs/${id}`)).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    expect((await client.get<{ id: string }>(`/jobs/${id}`)).id).toBe(id);
  });

  it('after the run: every DESIGN.md invariant holds, and every job has its MongoDB document', async () => {
    const b = server.backbone;
    const namespaces = await b.pool.query<{ id: string }>('select id from namespaces');
    const scope = {
      pool: b.pool,
      ledger: b.ledger,
      redis: b.redis,
      redisPrefix: b.config.REDIS_KEY_PREFIX,
      namespaceIds: namespaces.rows.map((r) => r.id),
      mongo: b.mongo.db,
    };
    // Polling jobs above may still be finishing, and records arrive in batches.
    const checks = await waitForInvariants(scope, { timeoutMs: 10_000 });
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(checks.map((c) => c.name)).toContain('one MongoDB job document per job');
  });
});
