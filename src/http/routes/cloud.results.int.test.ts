// Results durable beyond Redis (issue 15 item 2), through the Cloud API on a backbone with all four stores:
// with the Redis copy gone, a sync Idempotency-Key replay of a succeeded job returns its output at once (not a
// timeout "cancelled and refunded"), and GET /v1/jobs/:id of it shows the output while the namespace's
// retention keeps it, then 410 result_expired (the prune task deletes the row; another namespace's stays); an
// Idempotency-Key replay of a job whose output was pruned is that same 410 at once, never a wait or a re-run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import { heartbeat, openSessions, randomAddress } from '../../../test/live-harness.js';
import { testLog } from '../../../test/harness.js';
import { createResultRetentionTask, type NodeExecutor } from '../../modules/jobs/index.js';
import type { RunningServer } from '../../app/serve.js';
import { scanKeys } from '../../stores/redis/client.js';

/** Job ids the node ran, in order (a replay must never add one). */
const ran: string[] = [];
const executor: NodeExecutor = {
  run: async (_lease, job) => (
    ran.push(job.jobId),
    {
      tokensIn: 2,
      tokensOut: 3,
      output: `done ${job.jobId}`,
      finishReason: 'stop',
    }
  ),
};

let stores: TestStores;
let server: RunningServer;

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, {
    roles: 'cloud,io',
    executor,
    overrides: { JOB_SYNC_TIMEOUT_MS: 3_000, PRICE_PER_TOKEN_MICRO: 10 },
  });
  const b = server.backbone;
  const account = await b.accounts.createAccount({ email: 'op@results.example' });
  const address = randomAddress();
  await b.nodes.admin.registerNode({ address, environment: 'testnet', accountId: account.id });
  await openSessions(b.nodes, [{ address, environment: 'testnet' }]);
  await b.nodes.presence.ingest(
    heartbeat(address, {
      environment: 'testnet',
      models: [{ name: 'llama3-8b', version: 'v1', active: true }],
    }),
  );
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

describe('results recoverable from PostgreSQL', () => {
  it('a sync replay and a poll of a succeeded job whose Redis result is gone return its output', async () => {
    const b = server.backbone;
    const account = await b.accounts.createAccount({ email: 'c@results.example' });
    const ns = await b.accounts.createNamespace({ accountId: account.id, name: 'r' });
    await b.ledger.topUp(ns.id, 10_000_000n, 'seed');
    const key = await b.accounts.createApiKey({ namespaceId: ns.id, name: 'k' });
    const post = () =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${key.plaintext}`,
          'idempotency-key': 'replay-1',
          'x-rty-environment': 'testnet',
        },
        body: JSON.stringify({ model: 'llama3-8b', messages: [{ role: 'user', content: 'hello' }] }),
      });
    const first = await post();
    expect(first.status).toBe(200);
    const jobId = first.headers.get('x-request-id')!;
    const text = ((await first.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!
      .message.content;
    expect(text).toBe(`done ${jobId}`);
    // Redis loses the result (a flush, or its TTL passed).
    const keys = await scanKeys(b.redis, `${stores.config().REDIS_KEY_PREFIX}*`);
    const resultKeys = keys.filter((k) => k.includes(jobId));
    expect(resultKeys.length).toBeGreaterThan(0);
    await b.redis.del(...resultKeys);
    const started = Date.now();
    const replay = await post();
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(
      ((await replay.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message
        .content,
    ).toBe(text);
    expect(Date.now() - started).toBeLessThan(2_500); // answered, not waited out to the sync timeout
    const poll = await fetch(`${server.url}/v1/jobs/${jobId}`, {
      headers: { authorization: `Bearer ${key.plaintext}` },
    });
    expect(await poll.json()).toMatchObject({
      status: 'succeeded',
      result: { choices: [{ message: { content: text } }] },
    });
    // Charged once.
    const settles = await b.pool.query(
      `select count(*)::int as n from ledger_entries where kind = 'settle' and job_id = $1`,
      [jobId],
    );
    expect(settles.rows[0].n).toBe(1);
  });

  it('an Idempotency-Key is bound to its request body: another body with the same key is 409 idempotency_conflict', async () => {
    const b = server.backbone;
    const account = await b.accounts.createAccount({ email: 'i@results.example' });
    const ns = await b.accounts.createNamespace({ accountId: account.id, name: 'i' });
    await b.ledger.topUp(ns.id, 10_000_000n, 'seed');
    const key = await b.accounts.createApiKey({ namespaceId: ns.id, name: 'k' });
    const post = (content: string) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${key.plaintext}`,
          'idempotency-key': 'bound-1',
          'x-rty-environment': 'testnet',
        },
        body: JSON.stringify({ model: 'llama3-8b', messages: [{ role: 'user', content }] }),
      });
    expect((await post('first body')).status).toBe(200);
    const other = await post('another body');
    expect(other.status).toBe(409);
    expect(await other.json()).toMatchObject({ error: { code: 'idempotency_conflict' } });
    const same = await post('first body');
    expect(same.status).toBe(200);
    expect(same.headers.get('idempotent-replayed')).toBe('true');
    const rows = await b.pool.query('select count(*)::int as n from jobs where namespace_id = $1', [ns.id]);
    expect(rows.rows[0].n).toBe(1);
  });

  it('GET /v1/jobs/:id of a succeeded job: its output within retention, 410 result_expired after; rows pruned', async () => {
    const b = server.backbone;
    const account = await b.accounts.createAccount({ email: 'x@results.example' });
    const tenants = await Promise.all(
      ['old', 'young'].map(async (name) => {
        const ns = await b.accounts.createNamespace({ accountId: account.id, name });
        await b.ledger.topUp(ns.id, 10_000_000n, 'seed');
        const key = await b.accounts.createApiKey({ namespaceId: ns.id, name: 'k' });
        const res = await fetch(`${server.url}/v1/chat/completions`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${key.plaintext}`,
            'x-rty-environment': 'testnet',
          },
          body: JSON.stringify({ model: 'llama3-8b', messages: [{ role: 'user', content: name }] }),
        });
        expect(res.status).toBe(200);
        return { ns, key, jobId: res.headers.get('x-request-id')! };
      }),
    );
    const [old, young] = tenants as [(typeof tenants)[0], (typeof tenants)[0]];
    const poll = (t: typeof old) =>
      fetch(`${server.url}/v1/jobs/${t.jobId}`, { headers: { authorization: `Bearer ${t.key.plaintext}` } });
    // Only the PostgreSQL copy left (the Redis copy lives an hour, retention is days).
    const keys = await scanKeys(b.redis, `${stores.config().REDIS_KEY_PREFIX}*`);
    const resultKeys = keys.filter((k) => k.includes(old.jobId) || k.includes(young.jobId));
    if (resultKeys.length > 0) await b.redis.del(...resultKeys);
    // Both finished two days ago; "old" keeps 1 day, "young" 7 days.
    await b.pool.query(
      `update job_results set finished_at = now() - interval '2 days' where job_id = any($1::uuid[])`,
      [[old.jobId, young.jobId]],
    );
    await b.pool.query('update namespaces set retention_days = 1 where id = $1', [old.ns.id]);
    const within = await poll(young);
    expect(within.status).toBe(200);
    expect(await within.json()).toMatchObject({
      status: 'succeeded',
      result: { choices: [{ message: { content: `done ${young.jobId}` } }] },
    });
    // Past retention, before the prune: a clear 410, never "succeeded" without output.
    const gone = await poll(old);
    expect(gone.status).toBe(410);
    expect(await gone.json()).toMatchObject({ error: { code: 'result_expired', type: 'not_found_error' } });

    const task = createResultRetentionTask({
      pool: b.pool,
      log: testLog,
      options: { intervalMs: 60_000, batchSize: 1 },
    });
    expect((await task.run(new AbortController().signal)).pruned).toBeGreaterThanOrEqual(1);
    const rows = await b.pool.query<{ job_id: string }>(
      'select job_id::text from job_results where job_id = any($1::uuid[])',
      [[old.jobId, young.jobId]],
    );
    expect(rows.rows.map((r) => r.job_id)).toEqual([young.jobId]);
    expect((await poll(old)).status).toBe(410);
    expect((await poll(young)).status).toBe(200);
    // The job row (status, cost) stays: only the output is gone.
    const job = await b.pool.query('select status, cost from jobs where id = $1', [old.jobId]);
    expect(job.rows[0]).toMatchObject({ status: 'succeeded' });
  });

  it('an Idempotency-Key replay of a job whose result was pruned: 410 result_expired at once, sync and polling; no re-run', async () => {
    const b = server.backbone;
    const account = await b.accounts.createAccount({ email: 'p@results.example' });
    const ns = await b.accounts.createNamespace({ accountId: account.id, name: 'p' });
    await b.ledger.topUp(ns.id, 10_000_000n, 'seed');
    const key = await b.accounts.createApiKey({ namespaceId: ns.id, name: 'k' });
    const post = (mode: 'sync' | 'polling') =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${key.plaintext}`,
          'idempotency-key': 'pruned-1',
          'x-rty-environment': 'testnet',
          'x-rty-mode': mode,
        },
        body: JSON.stringify({ model: 'llama3-8b', messages: [{ role: 'user', content: 'keep me' }] }),
      });
    const first = await post('sync');
    expect(first.status).toBe(200);
    const jobId = first.headers.get('x-request-id')!;
    expect(ran.filter((id) => id === jobId)).toHaveLength(1);
    // The output ages past the namespace's retention and the prune task deletes it; Redis has no copy.
    const keys = await scanKeys(b.redis, `${stores.config().REDIS_KEY_PREFIX}*`);
    const resultKeys = keys.filter((k) => k.includes(jobId));
    if (resultKeys.length > 0) await b.redis.del(...resultKeys);
    await b.pool.query(`update job_results set finished_at = now() - interval '2 days' where job_id = $1`, [
      jobId,
    ]);
    await b.pool.query('update namespaces set retention_days = 1 where id = $1', [ns.id]);
    const task = createResultRetentionTask({
      pool: b.pool,
      log: testLog,
      options: { intervalMs: 60_000, batchSize: 100 },
    });
    await task.run(new AbortController().signal);
    const left = await b.pool.query('select 1 from job_results where job_id = $1', [jobId]);
    expect(left.rowCount).toBe(0);

    for (const mode of ['sync', 'polling'] as const) {
      const started = Date.now();
      const replay = await post(mode);
      // Answered at once (the sync timeout is 3 s here), with the clear error and the job it names.
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(replay.status).toBe(410);
      expect(replay.headers.get('x-request-id')).toBe(jobId);
      const body = (await replay.json()) as { error: { code: string; type: string; message: string } };
      expect(body.error).toMatchObject({ code: 'result_expired', type: 'not_found_error' });
      expect(body.error.message).toContain('new Idempotency-Key');
    }
    // Nothing ran, reserved or charged again: one job, one reserve, one settle.
    expect(ran.filter((id) => id === jobId)).toHaveLength(1);
    const jobs = await b.pool.query('select status from jobs where namespace_id = $1', [ns.id]);
    expect(jobs.rows).toEqual([{ status: 'succeeded' }]);
    const entries = await b.pool.query<{ kind: string; n: number }>(
      `select kind, count(*)::int as n from ledger_entries where job_id = $1 group by kind order by kind`,
      [jobId],
    );
    expect(entries.rows.filter((r) => r.kind === 'reserve' || r.kind === 'settle')).toEqual([
      { kind: 'reserve', n: 1 },
      { kind: 'settle', n: 1 },
    ]);
  });
});
