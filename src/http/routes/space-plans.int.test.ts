// Space plans through the Gate and Admin APIs on a whole backbone on the real stores (own schema, Redis prefix,
// vhost, Mongo database): the first day charged through the ledger, 402 changing nothing, idempotent retries, 409
// on a reused key, 400 naming the field, another account's namespace a 404, every change audited in the same
// transaction, and the retention receipts and export files of a namespace after a cancel shortened its period.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import { testLog, uniqueName } from '../../../test/harness.js';
import { jobEvents } from '../../../test/record-events.js';
import type { RunningServer } from '../../app/serve.js';
import { RecorderService } from '../../modules/records/index.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let stores: TestStores;
let server: RunningServer;
let adminToken: string;
let exportDir: string;

async function call(
  method: 'GET' | 'POST',
  url: string,
  opts: { token?: string; body?: unknown } = {},
): Promise<{ status: number; json: Json; raw: Buffer }> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await server.app.inject({
    method,
    url,
    headers,
    ...(opts.body !== undefined ? { payload: JSON.stringify(opts.body) } : {}),
  });
  let json: Json = {};
  try {
    json = res.json();
  } catch {
    // binary bodies (export files)
  }
  return { status: res.statusCode, json, raw: res.rawPayload };
}

const q = async <T = Json>(sql: string, params: unknown[] = []) =>
  (await stores.db.pool.query(sql, params)).rows as T[];

async function newAccountWithNamespace(topUpMicro?: number): Promise<{ token: string; ns: string }> {
  const a = await call('POST', '/admin/v1/accounts', {
    token: adminToken,
    body: { email: `${uniqueName('space')}@example.test` },
  });
  expect(a.status).toBe(201);
  const ns = await call('POST', '/gate/v1/namespaces', { token: a.json.token, body: { name: 'data' } });
  expect(ns.status).toBe(201);
  if (topUpMicro !== undefined) {
    const t = await call('POST', `/admin/v1/namespaces/${ns.json.id}/topups`, {
      token: adminToken,
      body: { amountMicro: topUpMicro, idempotencyKey: uniqueName('t') },
    });
    expect(t.status).toBe(201);
  }
  return { token: a.json.token, ns: ns.json.id };
}

/** Everything a refused plan request must leave as it was. */
async function stateOf(ns: string) {
  return {
    namespace: await q(
      'select retention_plan, retention_days, retention_grace_until from namespaces where id = $1',
      [ns],
    ),
    changes: await q('select id from space_plan_changes where namespace_id = $1', [ns]),
    events: await q('select id from retention_plan_events where namespace_id = $1', [ns]),
    days: await q('select * from storage_charge_days where namespace_id = $1', [ns]),
    entries: await q('select id from ledger_entries where namespace_id = $1', [ns]),
    balance: await q('select available, reserved from credit_balances where namespace_id = $1', [ns]),
    audit: await q('select count(*)::int as n from audit_log'),
  };
}

let catalogue: Json[];
const minOf = (plan: string) => BigInt(catalogue.find((p) => p.id === plan)!.minMicroPerDay);

beforeAll(async () => {
  exportDir = await mkdtemp(join(tmpdir(), 'rty-space-'));
  stores = await createTestStores();
  adminToken = stores.config().ADMIN_TOKEN;
  server = await startTestServer(stores, {
    roles: 'gate,admin',
    overrides: { RECORDS_EXPORT_DIR: exportDir },
  });
  const acct = await newAccountWithNamespace();
  const plans = await call('GET', '/gate/v1/space/plans', { token: acct.token });
  expect(plans.status).toBe(200);
  catalogue = plans.json.data;
});
afterAll(async () => {
  await server?.stop();
  await stores?.drop();
  await rm(exportDir, { recursive: true, force: true });
});

describe('Space plans', () => {
  it('lists the catalogue on both APIs', async () => {
    expect(catalogue.map((p) => p.id)).toEqual(['space-30', 'space-90', 'space-365']);
    expect(catalogue[0]).toMatchObject({
      retentionDays: 30,
      priceMicroPerGbDay: '20000',
      minMicroPerDay: '10000',
    });
    const admin = await call('GET', '/admin/v1/space/plans', { token: adminToken });
    expect(admin.json.data).toEqual(catalogue);
  });

  it('choosing a plan pays its first day through the ledger, audited; a retry replays; an upgrade pays the difference', async () => {
    const { token, ns } = await newAccountWithNamespace(1_000_000);
    const auditBefore = (await stateOf(ns)).audit[0]!.n;
    const url = `/gate/v1/namespaces/${ns}/plan`;
    const first = await call('POST', url, { token, body: { plan: 'space-30', idempotencyKey: 'k-1' } });
    expect(first.status, JSON.stringify(first.json)).toBe(201);
    const day = new Date().toISOString().slice(0, 10);
    expect(first.json.change).toMatchObject({
      action: 'set',
      fromPlan: 'default',
      toPlan: 'space-30',
      retentionDays: 30,
      day,
      chargedMicro: minOf('space-30').toString(),
      replayed: false,
    });
    expect(first.json.balance.availableMicro).toBe((1_000_000n - minOf('space-30')).toString());
    const shown = await call('GET', url, { token });
    expect(shown.json).toMatchObject({ plan: 'space-30', retentionDays: 30, graceUntil: null });
    expect(shown.json.changes).toHaveLength(1);

    // The ledger entry, today's charge row and the audit entry, all from the one transaction.
    expect(
      await q(
        `select kind, amount, idem_key from ledger_entries where namespace_id = $1 and kind = 'storage_charge'`,
        [ns],
      ),
    ).toEqual([
      { kind: 'storage_charge', amount: minOf('space-30'), idem_key: `storage_charge:${ns}:space-plan:k-1` },
    ]);
    expect(
      await q('select plan, amount, status from storage_charge_days where namespace_id = $1', [ns]),
    ).toEqual([{ plan: 'space-30', amount: minOf('space-30'), status: 'charged' }]);
    const audit = await q<{ actor: string; action: string; target: string; body: Json }>(
      `select actor, action, target, body from audit_log where target = $1 order by seq`,
      [`namespace:${ns}`],
    );
    expect(audit.filter((a) => a.action.startsWith('space_plan.'))).toEqual([
      expect.objectContaining({
        action: 'space_plan.set',
        actor: expect.stringMatching(/^account:/),
        body: expect.objectContaining({
          plan: 'space-30',
          from: 'default',
          idempotencyKey: 'k-1',
          chargedMicro: '10000',
        }),
      }),
    ]);

    // The same request again changes nothing.
    const before = await stateOf(ns);
    expect(before.audit[0]!.n).toBe(auditBefore + 1);
    const replay = await call('POST', url, { token, body: { plan: 'space-30', idempotencyKey: 'k-1' } });
    expect(replay.status).toBe(200);
    expect(replay.json.change).toMatchObject({
      id: first.json.change.id,
      replayed: true,
      chargedMicro: '10000',
    });
    expect(await stateOf(ns)).toEqual(before);
    // The same key for another plan is a conflict naming the key.
    const conflict = await call('POST', url, { token, body: { plan: 'space-90', idempotencyKey: 'k-1' } });
    expect(conflict.status).toBe(409);
    expect(conflict.json.error).toMatchObject({ code: 'idempotency_conflict', param: 'idempotencyKey' });
    expect(await stateOf(ns)).toEqual(before);

    // An upgrade the same day pays only what today's higher minimum adds.
    const up = await call('POST', url, { token, body: { plan: 'space-365', idempotencyKey: 'k-2' } });
    expect(up.status).toBe(201);
    expect(up.json.change.chargedMicro).toBe((minOf('space-365') - minOf('space-30')).toString());
    expect(up.json.balance.availableMicro).toBe((1_000_000n - minOf('space-365')).toString());
    // The daily charge finds today paid.
    expect(await server.backbone.records.billing.chargeNamespace(ns)).toBe('already_charged');
    // A downgrade refunds nothing and charges nothing more today.
    const down = await call('POST', url, { token, body: { plan: 'space-90', idempotencyKey: 'k-3' } });
    expect(down.json.change).toMatchObject({ chargedMicro: '0', retentionDays: 90 });
    expect(await server.backbone.ledger.verifyLedger()).toEqual([]);
    expect((await server.backbone.audit.verify()).problems).toEqual([]);
  });

  it('concurrent retries of one request charge once and all answer the same change', async () => {
    const { token, ns } = await newAccountWithNamespace(1_000_000);
    const body = { plan: 'space-90', idempotencyKey: 'race-1' };
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => call('POST', `/gate/v1/namespaces/${ns}/plan`, { token, body })),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
    expect(new Set(answers.map((a) => a.json.change.id)).size).toBe(1);
    expect(
      await q(`select amount from ledger_entries where namespace_id = $1 and kind = 'storage_charge'`, [ns]),
    ).toEqual([{ amount: minOf('space-90') }]);
    expect(
      await q(`select seq from audit_log where action = 'space_plan.set' and target = $1`, [
        `namespace:${ns}`,
      ]),
    ).toHaveLength(1);
  });

  it('a namespace short of credits gets 402 and nothing changes', async () => {
    const { token, ns } = await newAccountWithNamespace(5_000); // less than any plan's daily minimum
    const before = await stateOf(ns);
    const r = await call('POST', `/gate/v1/namespaces/${ns}/plan`, {
      token,
      body: { plan: 'space-30', idempotencyKey: 'short-1' },
    });
    expect(r.status).toBe(402);
    expect(r.json.error.code).toBe('insufficient_credits');
    expect(await stateOf(ns)).toEqual(before);
    expect(before.namespace[0]).toMatchObject({ retention_plan: 'default', retention_days: 7 });
    // The same key works once the namespace is topped up (the refused attempt did not use it up).
    await call('POST', `/admin/v1/namespaces/${ns}/topups`, {
      token: adminToken,
      body: { amountMicro: 1_000_000, idempotencyKey: 'more' },
    });
    const ok = await call('POST', `/gate/v1/namespaces/${ns}/plan`, {
      token,
      body: { plan: 'space-30', idempotencyKey: 'short-1' },
    });
    expect(ok.status).toBe(201);
  });

  it('bad input is a 400 naming the field and writes nothing', async () => {
    const { token, ns } = await newAccountWithNamespace(1_000_000);
    const before = await stateOf(ns);
    const url = `/gate/v1/namespaces/${ns}/plan`;
    const cases: Array<[unknown, string]> = [
      [{ plan: 'space-7', idempotencyKey: 'a' }, 'plan'],
      [{ plan: 'Space 30!', idempotencyKey: 'a' }, 'plan'],
      [{ plan: 'space-30', idempotencyKey: 'has space' }, 'idempotencyKey'],
      [{ plan: 'space-30' }, 'idempotencyKey'],
      [{ plan: 'space-30', idempotencyKey: 'a', extra: 1 }, ''],
    ];
    for (const [body, param] of cases) {
      const r = await call('POST', url, { token, body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.error.code).toBe('invalid_request');
      if (param) expect(r.json.error.param ?? r.json.error.message, JSON.stringify(r.json)).toContain(param);
    }
    const unknown = await call('POST', url, { token, body: { plan: 'space-7', idempotencyKey: 'a' } });
    expect(unknown.json.error.message).toContain('space-30, space-90, space-365');
    expect(
      (
        await call('POST', '/gate/v1/namespaces/not-a-uuid/plan', {
          token,
          body: { plan: 'space-30', idempotencyKey: 'a' },
        })
      ).status,
    ).toBe(400);
    expect((await call('POST', `${url}/cancel`, { token, body: {} })).status).toBe(400);
    expect(await stateOf(ns)).toEqual(before);
  });

  it("another account's namespace is a 404 on every plan and receipt route, and nothing changes", async () => {
    const a = await newAccountWithNamespace(1_000_000);
    const b = await newAccountWithNamespace(1_000_000);
    const before = await stateOf(a.ns);
    const runId = '00000000-0000-4000-8000-000000000009';
    const refused = [
      await call('GET', `/gate/v1/namespaces/${a.ns}/plan`, { token: b.token }),
      await call('POST', `/gate/v1/namespaces/${a.ns}/plan`, {
        token: b.token,
        body: { plan: 'space-30', idempotencyKey: 'x' },
      }),
      await call('POST', `/gate/v1/namespaces/${a.ns}/plan/cancel`, {
        token: b.token,
        body: { idempotencyKey: 'x' },
      }),
      await call('GET', `/gate/v1/namespaces/${a.ns}/retention/receipts`, { token: b.token }),
      await call('GET', `/gate/v1/namespaces/${a.ns}/retention/receipts/${runId}/files/manifest.json`, {
        token: b.token,
      }),
    ];
    expect(refused.map((r) => r.status)).toEqual([404, 404, 404, 404, 404]);
    expect(refused.every((r) => r.json.error.code === 'namespace_not_found')).toBe(true);
    expect(await stateOf(a.ns)).toEqual(before);
    // The admin may act on any namespace; its changes are audited as the admin.
    const admin = await call('POST', `/admin/v1/namespaces/${a.ns}/plan`, {
      token: adminToken,
      body: { plan: 'space-90', idempotencyKey: 'adm-1' },
    });
    expect(admin.status).toBe(201);
    expect(admin.json.change.actor).toBe('admin');
    const entry = await q(`select actor from audit_log where action = 'space_plan.set' and target = $1`, [
      `namespace:${a.ns}`,
    ]);
    expect(entry).toEqual([{ actor: 'admin' }]);
  });

  it('cancel returns to the default period; the sweep then exports, and the receipts and files are readable', async () => {
    const { token, ns } = await newAccountWithNamespace(1_000_000);
    const other = await newAccountWithNamespace();
    const base = `/gate/v1/namespaces/${ns}`;
    expect(
      (await call('POST', `${base}/plan`, { token, body: { plan: 'space-30', idempotencyKey: 'p' } })).status,
    ).toBe(201);
    // Ten-day-old records are inside the plan's 30 days, so the recorder keeps them.
    const bb = server.backbone;
    const recorder = new RecorderService({
      repo: bb.records.repo,
      blobs: bb.records.blobs,
      policies: bb.records.policies,
      log: testLog,
      options: { largePayloadBytes: 1 << 20, maxDocumentBytes: 1 << 22 },
    });
    const jobs = [0, 1, 2].map((i) =>
      jobEvents({ namespaceId: ns, at: new Date(Date.now() - 10 * 86_400_000 + i * 1000) }),
    );
    expect((await recorder.record(jobs.flat())).every((o) => o.status === 'recorded')).toBe(true);

    const cancel = await call('POST', `${base}/plan/cancel`, { token, body: { idempotencyKey: 'c' } });
    expect(cancel.status).toBe(201);
    expect(cancel.json.change).toMatchObject({
      action: 'cancel',
      fromPlan: 'space-30',
      toPlan: 'default',
      retentionDays: 7,
      chargedMicro: '0',
    });
    expect((await call('GET', `${base}/plan`, { token })).json).toMatchObject({
      plan: 'default',
      retentionDays: 7,
      paidThrough: null,
    });
    expect(
      await q(`select action from audit_log where action = 'space_plan.cancel' and target = $1`, [
        `namespace:${ns}`,
      ]),
    ).toHaveLength(1);

    await bb.records.retention.sweep();
    const receipts = await call('GET', `${base}/retention/receipts`, { token });
    expect(receipts.status).toBe(200);
    const jobsRun = receipts.json.data.find((r: Json) => r.collection === 'record_jobs');
    expect(jobsRun).toMatchObject({ status: 'done', docCount: 3, deletedCount: 3 });
    expect(jobsRun.files).toEqual([expect.objectContaining({ name: 'part-00000.jsonl.gz', count: 3 })]);
    const admin = await call('GET', `/admin/v1/namespaces/${ns}/retention/receipts`, { token: adminToken });
    expect(admin.json.data).toEqual(receipts.json.data);

    const part = await call('GET', `${base}/retention/receipts/${jobsRun.id}/files/part-00000.jsonl.gz`, {
      token,
    });
    expect(part.status).toBe(200);
    const lines = gunzipSync(part.raw).toString('utf8').trim().split('\n');
    expect(lines).toHaveLength(3);
    for (const j of jobs) expect(lines.join('\n')).toContain((j[0] as { jobId: string }).jobId);
    const manifest = await call('GET', `${base}/retention/receipts/${jobsRun.id}/files/manifest.json`, {
      token,
    });
    expect(manifest.json).toMatchObject({ runId: jobsRun.id, namespaceId: ns, count: 3 });

    const missing = [
      await call('GET', `${base}/retention/receipts/${jobsRun.id}/files/part-00007.jsonl.gz`, { token }),
      await call(
        'GET',
        `${base}/retention/receipts/00000000-0000-4000-8000-000000000001/files/manifest.json`,
        { token },
      ),
      // A run of this namespace read through another account's own namespace: not there.
      await call(
        'GET',
        `/gate/v1/namespaces/${other.ns}/retention/receipts/${jobsRun.id}/files/manifest.json`,
        {
          token: other.token,
        },
      ),
    ];
    expect(missing.map((r) => r.status)).toEqual([404, 404, 404]);
    expect(
      (await call('GET', `${base}/retention/receipts/${jobsRun.id}/files/..%2Fsecret`, { token })).status,
    ).toBe(400);
  });
});
