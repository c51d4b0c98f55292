// Per-model prices end to end: a price table published through the Admin API (signed network config), real node
// agents on the WebSocket gateway, the official `openai` client. Two models settle exactly at their own input and
// output prices (ledger entries to the micro-credit), a price change applies to new jobs only, a stream cut by its
// client is charged its delivered tokens at the model's price, /v1/models shows the prices, bad tables are refused
// naming the field, the job row, result and MongoDB document record the price version, rollups keep versions
// apart, and the ledger invariants hold with nothing reserved.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import { bindNodes, fundedNamespace, gatewayOverrides, newAgent } from '../../../test/gateway-harness.js';
import { waitFor } from '../../../test/routing-fixtures.js';
import type { RunningServer } from '../../app/serve.js';
import type { NodeAgent } from '../../agent/node-agent.js';
import { BuiltinRuntime } from '../../agent/node-runtime.js';
import { checkInvariants } from '../../cli/invariants.js';
import { promptTokenBound } from '../../modules/jobs/index.js';
import { RollupsService } from '../../modules/rollups/index.js';

const MODEL_A = 'model-a';
const MODEL_B = 'model-b';
const UNLISTED = 'model-c';
const SLOW = 'slow-model';
const SHARE = 80n;
const TEN_WORDS = 'w1 w2 w3 w4 w5 w6 w7 w8 w9 w10';
const p = (i: number, o: number) => ({ inputMicroPer1kTokens: i, outputMicroPer1kTokens: o });

const table = (slow: ReturnType<typeof p>) => ({
  heartbeatIntervalMs: 1000,
  prices: {
    default: p(2_000, 2_000),
    models: [
      { model: MODEL_A, ...p(1_500, 7_000) },
      // Another environment's entry never prices a testnet job.
      { model: MODEL_A, environment: 'mainnet', ...p(1, 1) },
      { model: MODEL_B, ...p(333, 1) },
      { model: SLOW, ...slow },
    ],
  },
});

let stores: TestStores;
let server: RunningServer;
let fast: NodeAgent;
let slow: NodeAgent;
let nsId: string;
let apiKey: string;
let adminToken: string;

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, {
    overrides: { ...gatewayOverrides, ROUTING_MAX_ATTEMPTS: 1, RECORDS_CONSUMER_BATCH_MAX_WAIT_MS: 20 },
  });
  adminToken = stores.config().ADMIN_TOKEN;
  fast = newAgent(server, { models: [MODEL_A, MODEL_B, UNLISTED] });
  slow = newAgent(server, { models: [SLOW], runtime: new BuiltinRuntime({ tokenDelayMs: 150 }) });
  await bindNodes(server.backbone, [fast.address, slow.address]);
  await Promise.all([fast.start(), slow.start()]);
  nsId = await fundedNamespace(server.backbone);
  apiKey = (await server.backbone.accounts.createApiKey({ namespaceId: nsId, name: 'prices' })).plaintext;
}, 60_000);
afterAll(async () => {
  await Promise.all([fast, slow].map((x) => x?.stop()));
  await server?.stop();
  await stores?.drop();
});

const client = () => new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0, timeout: 20_000 });

async function publish(body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${server.url}/admin/v1/network/config`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ body }),
  });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

const ceilDiv1000 = (n: bigint) => (n + 999n) / 1000n;
const cost = (price: ReturnType<typeof p>, tin: number, tout: number) =>
  ceilDiv1000(
    BigInt(tin) * BigInt(price.inputMicroPer1kTokens) + BigInt(tout) * BigInt(price.outputMicroPer1kTokens),
  );

/** The job once terminal: its row and its ledger entries (kind:amount in order). */
async function settled(jobId: string) {
  const pool = server.backbone.pool;
  let row: Record<string, string | number | null> | undefined;
  await waitFor(
    `job ${jobId} terminal`,
    async () => {
      const r = await pool.query(
        'select status, cost, max_cost, tokens_in, tokens_out, price_version from jobs where id = $1',
        [jobId],
      );
      row = r.rows[0] as typeof row;
      return row !== undefined && row.status !== 'queued' && row.status !== 'dispatched';
    },
    15_000,
  );
  const e = await pool.query<{ kind: string; amount: string }>(
    'select kind, amount from ledger_entries where job_id = $1 order by id',
    [jobId],
  );
  return {
    status: row!.status,
    cost: BigInt(row!.cost ?? 0),
    maxCost: BigInt(row!.max_cost!),
    tokensIn: Number(row!.tokens_in),
    tokensOut: Number(row!.tokens_out),
    priceVersion: row!.price_version,
    entries: e.rows.map((x) => `${x.kind}:${x.amount}`),
  };
}

async function expectInvariants(): Promise<void> {
  const bb = server.backbone;
  const checks = await checkInvariants({
    pool: bb.pool,
    ledger: bb.ledger,
    redis: bb.redis,
    redisPrefix: bb.config.REDIS_KEY_PREFIX,
    namespaceIds: [nsId],
  });
  expect(checks.filter((c) => !c.ok)).toEqual([]);
  expect((await bb.ledger.getBalance(nsId))!.reserved).toBe(0n);
}

let v1 = 0;

describe('per-model prices', () => {
  it('refuses bad tables at publish with a 400 naming the field, and publishes nothing', async () => {
    const before = (await server.backbone.networkConfig.list()).length;
    for (const [prices, field] of [
      [{ default: p(-5, 1) }, 'body.prices.default.inputMicroPer1kTokens'],
      [{ default: p(1, 0.5) }, 'body.prices.default.outputMicroPer1kTokens'],
      [
        { default: p(1, 1), models: [{ model: MODEL_A, gpu: 'a100', ...p(1, 1) }] },
        'body.prices.models[0].gpu',
      ],
      [{ default: p(1, 1), tiers: [] }, 'body.prices.tiers'],
    ] as const) {
      const r = await publish({ prices });
      expect(r.status).toBe(400);
      const err = r.json.error as { code: string; message: string; param: string };
      expect(err).toMatchObject({ code: 'invalid_request', param: field });
      expect(err.message).toContain(field);
    }
    expect((await server.backbone.networkConfig.list()).length).toBe(before);
  });

  it('two models with different input and output prices settle exactly; /v1/models shows each price', async () => {
    const pub = await publish(table(p(1_234, 5_678)));
    expect(pub.status).toBe(201);
    v1 = pub.json.version as number;

    const models = (await client().models.list()).data as unknown as Array<{
      id: string;
      pricing: Record<string, number>;
    }>;
    const pricing = Object.fromEntries(models.map((m) => [m.id, m.pricing]));
    expect(pricing[MODEL_A]).toEqual({
      input_micro_per_1k_tokens: 1_500,
      output_micro_per_1k_tokens: 7_000,
      price_version: v1,
    });
    expect(pricing[MODEL_B]).toMatchObject({ input_micro_per_1k_tokens: 333, output_micro_per_1k_tokens: 1 });
    expect(pricing[UNLISTED]).toMatchObject({
      input_micro_per_1k_tokens: 2_000,
      output_micro_per_1k_tokens: 2_000,
    });
    const one = (await client().models.retrieve(MODEL_B)) as unknown as { pricing: Record<string, number> };
    expect(one.pricing).toEqual(pricing[MODEL_B]);

    const messages = [{ role: 'user' as const, content: 'one two three four five six seven' }];
    for (const [model, price] of [
      [MODEL_A, p(1_500, 7_000)],
      [MODEL_B, p(333, 1)],
      [UNLISTED, p(2_000, 2_000)],
    ] as const) {
      const r = await client().chat.completions.create({ model, messages, max_tokens: 16 });
      // The builtin runtime: 7 prompt words, 7 output words (one token each).
      expect(r.usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 7 });
      const job = await settled(r.id.replace(/^chatcmpl-/, ''));
      const charge = cost(price, 7, 7);
      const hold = cost(
        price,
        promptTokenBound({ kind: 'chat', body: { model, messages, max_tokens: 16 }, maxTokens: 16 }),
        16,
      );
      expect(job).toMatchObject({ status: 'succeeded', cost: charge, maxCost: hold, priceVersion: v1 });
      expect(job.entries).toEqual([
        `reserve:${hold}`,
        `settle:${charge}`,
        `release:${hold - charge}`,
        `earning:${(charge * SHARE) / 100n}`,
      ]);
    }
    // 7 × 1500 + 7 × 7000 = 59,500 → 60; 7 × 333 + 7 × 1 = 2,338 → 3 (rounded up once per job).
    expect([cost(p(1_500, 7_000), 7, 7), cost(p(333, 1), 7, 7)]).toEqual([60n, 3n]);
    await expectInvariants();
  });

  it('a price change applies to new jobs only: a job submitted before it settles at the old price', async () => {
    const submit = async (idem: string) => {
      const r = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${apiKey}`,
          'content-type': 'application/json',
          'x-rty-mode': 'polling',
          'idempotency-key': idem,
        },
        body: JSON.stringify({ model: SLOW, messages: [{ role: 'user', content: TEN_WORDS }] }),
      });
      expect(r.status).toBe(202);
      const job = (await r.json()) as { id: string; price_version: number };
      versions.set(job.id, job.price_version);
      return job.id;
    };
    const versions = new Map<string, number>();
    const old = p(1_234, 5_678);
    const idem = `before-${Date.now()}`;
    const before = await submit(idem);
    await waitFor('the first job on its node', () => slow.jobFrames.some((f) => f.jobId === before), 5_000);
    const pub = await publish(table(p(10_000, 20_000)));
    expect(pub.status).toBe(201);
    const v2 = pub.json.version as number;
    const after = await submit(`after-${Date.now()}`);
    // The same Idempotency-Key after the change is the first job (not a 409 for its other reservation).
    expect(await submit(idem)).toBe(before);

    const first = await settled(before);
    const second = await settled(after);
    expect(first).toMatchObject({ status: 'succeeded', tokensIn: 10, tokensOut: 10, priceVersion: v1 });
    expect(first.cost).toBe(cost(old, 10, 10));
    expect(second).toMatchObject({ status: 'succeeded', tokensIn: 10, tokensOut: 10, priceVersion: v2 });
    expect(second.cost).toBe(cost(p(10_000, 20_000), 10, 10));
    expect(second.cost).not.toBe(first.cost);
    // The polling view shows each job's price version (the replay shows the first job's).
    expect([versions.get(before), versions.get(after)]).toEqual([v1, v2]);
    const polled = await fetch(`${server.url}/v1/jobs/${before}`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(((await polled.json()) as { price_version: number }).price_version).toBe(v1);

    // The result and the MongoDB job document record the price each job was charged at.
    expect((await server.backbone.jobs.getResult(nsId, before))?.price).toEqual({ version: v1, ...old });
    const docs = server.backbone.mongo.db.collection<{ _id: string; price?: unknown }>('record_jobs');
    await waitFor(
      'job documents written',
      async () => (await docs.countDocuments({ _id: after })) === 1,
      15_000,
    );
    expect((await docs.findOne({ _id: after }))?.price).toEqual({ version: v2, ...p(10_000, 20_000) });
    await expectInvariants();
  });

  it('a stream its client leaves is charged its prompt and delivered tokens at the model price; the node earns its share', async () => {
    const price = p(10_000, 20_000); // the table in force since the last test
    await client().models.list();
    const ac = new AbortController();
    const stream = await client().chat.completions.create(
      { model: SLOW, messages: [{ role: 'user', content: TEN_WORDS }], stream: true },
      { signal: ac.signal },
    );
    let jobId = '';
    let seen = 0;
    await (async () => {
      for await (const c of stream) {
        jobId = c.id.replace(/^chatcmpl-/, '');
        if (c.choices[0]?.delta.content && ++seen === 3) ac.abort();
      }
    })().catch((e: unknown) => {
      if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
    });
    const job = await settled(jobId);
    expect(job).toMatchObject({ status: 'cancelled', tokensIn: 10, tokensOut: 3 });
    const charge = cost(price, 10, 3); // 100,000 + 60,000 → 160
    expect(job.cost).toBe(charge);
    expect(job.entries).toEqual([
      `reserve:${job.maxCost}`,
      `settle:${charge}`,
      `release:${job.maxCost - charge}`,
      `earning:${(charge * SHARE) / 100n}`,
    ]);
    await expectInvariants();
  });

  it('rollups keep price versions apart and their credits equal the jobs’ charges', async () => {
    const bb = server.backbone;
    const rollups = new RollupsService({
      pool: bb.pool,
      log: bb.log,
      clock: { now: () => new Date(Date.now() + 3 * 86_400_000) },
      options: { detailWindowDays: 1, maxDaysPerTransaction: 31 },
      audit: bb.audit,
    });
    await rollups.rollUp();
    const r = await bb.pool.query<{ price_version: number; jobs: string; credits: string }>(
      `select price_version, sum(jobs)::text as jobs, sum(credits)::text as credits from job_rollups
       where model = $1 group by price_version order by price_version`,
      [SLOW],
    );
    const d = await bb.pool.query<{ price_version: number; jobs: string; credits: string }>(
      `select price_version, count(*)::text as jobs, sum(cost)::text as credits from jobs
       where model = $1 group by price_version order by price_version`,
      [SLOW],
    );
    expect(r.rows.length).toBe(2);
    expect(r.rows).toEqual(d.rows);
    expect((await rollups.verifyPeriods()).bad).toEqual([]);
  });
});
