// Admin and Gate APIs over a whole backbone on the real stores (own schema, Redis prefix, vhost, Mongo db),
// through app.inject: auth, account isolation, secrets shown once and stored hashed, revocation, idempotent
// top-ups, bad input writing nothing, and the audit chain of every change.
import { createHmac, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import { testLog, uniqueName } from '../../../test/harness.js';
import { RecorderService } from '../../modules/records/index.js';
import type { RunningServer } from '../../app/serve.js';
import { jobEvents } from '../../../test/record-events.js';

let stores: TestStores;
let server: RunningServer;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function call(
  method: 'GET' | 'POST' | 'DELETE',
  url: string,
  opts: { token?: string; body?: unknown; raw?: string } = {},
): Promise<{ status: number; json: Json; text: string }> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.raw !== undefined || opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await server.app.inject({
    method,
    url,
    headers,
    ...(opts.raw !== undefined
      ? { payload: opts.raw }
      : opts.body !== undefined
        ? { payload: JSON.stringify(opts.body) }
        : {}),
  });
  let json: Json = {};
  try {
    json = res.json();
  } catch {
    // streamed text bodies
  }
  return { status: res.statusCode, json, text: res.body };
}

let adminToken: string;
const count = async (table: string) =>
  Number((await stores.db.pool.query<{ n: string }>(`select count(*)::text as n from ${table}`)).rows[0]!.n);

async function newAccount(): Promise<{ id: string; token: string }> {
  const r = await call('POST', '/admin/v1/accounts', {
    token: adminToken,
    body: { email: `${uniqueName('gate')}@example.test` },
  });
  expect(r.status).toBe(201);
  return { id: r.json.account.id, token: r.json.token };
}

beforeAll(async () => {
  stores = await createTestStores();
  adminToken = stores.config().ADMIN_TOKEN;
  server = await startTestServer(stores, {
    roles: 'gate,admin,status,cloud',
    overrides: { HTTP_BODY_LIMIT_BYTES: 4096 },
  });
});
afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

describe('admin API', () => {
  it('refuses a missing or wrong admin token with 401', async () => {
    expect((await call('GET', '/admin/v1/queues')).status).toBe(401);
    expect((await call('GET', '/admin/v1/queues', { token: 'wrong-token-wrong-token' })).status).toBe(401);
    const before = await count('accounts');
    const r = await call('POST', '/admin/v1/accounts', { token: 'nope', body: { email: 'x@example.test' } });
    expect(r.status).toBe(401);
    expect(await count('accounts')).toBe(before);
    expect((await call('GET', '/admin/v1/queues', { token: adminToken })).status).toBe(200);
  });

  it('creates accounts, namespaces and keys; secrets are shown once and only their hashes are stored', async () => {
    const acct = await newAccount();
    expect(acct.token).toMatch(/^rtya_/);
    const ns = await call('POST', `/admin/v1/accounts/${acct.id}/namespaces`, {
      token: adminToken,
      body: { name: 'prod' },
    });
    expect(ns.status).toBe(201);
    expect(ns.json.balance.availableMicro).toBe('0');
    const key = await call('POST', `/admin/v1/namespaces/${ns.json.id}/keys`, {
      token: adminToken,
      body: { name: 'ci', rateLimitPerS: 5 },
    });
    expect(key.status).toBe(201);
    const secret: string = key.json.secret;
    expect(secret).toMatch(/^rty_/);
    const view = await call('GET', `/admin/v1/accounts/${acct.id}`, { token: adminToken });
    expect(view.status).toBe(200);
    expect(view.json.namespaces).toHaveLength(1);
    expect(JSON.stringify(view.json)).not.toContain(secret);

    // The secret part itself may contain '_' (base64url): cut after the fixed-length prefix.
    const secretPart = secret.slice('rty_'.length + 13);
    const tokenPart = acct.token.slice('rtya_'.length + 13);
    expect(secretPart).toHaveLength(43);
    expect(tokenPart).toHaveLength(43);
    const dump = await stores.db.pool.query<{ t: string }>(
      `select (select coalesce(json_agg(row_to_json(k))::text, '') from api_keys k) ||
              (select coalesce(json_agg(row_to_json(t))::text, '') from account_tokens t) ||
              (select coalesce(json_agg(row_to_json(a))::text, '') from audit_log a) as t`,
    );
    for (const plain of [secret, secretPart, acct.token, tokenPart])
      expect(dump.rows[0]!.t).not.toContain(plain);
    const pepper = stores.config().API_KEY_PEPPER;
    const stored = await stores.db.pool.query<{ secret_hash: Buffer }>(
      'select secret_hash from api_keys where id = $1',
      [key.json.id],
    );
    expect(stored.rows[0]!.secret_hash.equals(createHmac('sha256', pepper).update(secretPart).digest())).toBe(
      true,
    );
  });

  it('revoking a key makes the Cloud API refuse it with 401', async () => {
    const acct = await newAccount();
    const ns = await call('POST', '/gate/v1/namespaces', { token: acct.token, body: { name: 'main' } });
    const key = await call('POST', `/gate/v1/namespaces/${ns.json.id}/keys`, {
      token: acct.token,
      body: { name: 'k' },
    });
    expect(key.status).toBe(201);
    expect((await call('GET', '/v1/models', { token: key.json.secret })).status).toBe(200);
    const rv = await call('POST', `/admin/v1/namespaces/${ns.json.id}/keys/${key.json.id}/revoke`, {
      token: adminToken,
    });
    expect(rv.status).toBe(200);
    expect((await call('GET', '/v1/models', { token: key.json.secret })).status).toBe(401);
    // A second revoke finds no active key.
    const again = await call('POST', `/admin/v1/namespaces/${ns.json.id}/keys/${key.json.id}/revoke`, {
      token: adminToken,
    });
    expect(again.status).toBe(404);
  });

  it('top-ups are idempotent by key; a reused key with another amount is a 409', async () => {
    const acct = await newAccount();
    const ns = await call('POST', '/gate/v1/namespaces', { token: acct.token, body: { name: 'money' } });
    const url = `/admin/v1/namespaces/${ns.json.id}/topups`;
    const big = '9007199254740993'; // 2^53 + 1: exact as a string
    const first = await call('POST', url, {
      token: adminToken,
      body: { amountMicro: big, idempotencyKey: 'p-1' },
    });
    expect(first.status).toBe(201);
    expect(first.json.balance.availableMicro).toBe(big);
    const replay = await call('POST', url, {
      token: adminToken,
      body: { amountMicro: big, idempotencyKey: 'p-1' },
    });
    expect(replay.status).toBe(200);
    expect(replay.json.replayed).toBe(true);
    const conflict = await call('POST', url, {
      token: adminToken,
      body: { amountMicro: 5, idempotencyKey: 'p-1' },
    });
    expect(conflict.status).toBe(409);
    for (const amountMicro of [1.5, -3, '1e6', '0', 'abc'])
      expect(
        (await call('POST', url, { token: adminToken, body: { amountMicro, idempotencyKey: 'p-2' } })).status,
      ).toBe(400);
    const bal = await call('GET', `/gate/v1/namespaces/${ns.json.id}/balance`, { token: acct.token });
    expect(bal.json.availableMicro).toBe(big);
  });

  it('malformed JSON, wrong types and oversize bodies are refused and write nothing', async () => {
    const [accounts, audit, versions] = [
      await count('accounts'),
      await count('audit_log'),
      await count('network_config_versions'),
    ];
    expect((await call('POST', '/admin/v1/accounts', { token: adminToken, raw: '{"email": ' })).status).toBe(
      400,
    );
    expect((await call('POST', '/admin/v1/accounts', { token: adminToken, body: { email: 5 } })).status).toBe(
      400,
    );
    expect((await call('POST', '/admin/v1/accounts', { token: adminToken, body: {} })).status).toBe(400);
    expect(
      (await call('POST', '/admin/v1/accounts', { token: adminToken, body: { walletAddress: '0xABC' } }))
        .status,
    ).toBe(400);
    const huge = await call('POST', '/admin/v1/network/config', {
      token: adminToken,
      body: { body: { blob: 'x'.repeat(8192) } },
    });
    expect(huge.status).toBe(413);
    expect(
      (await call('POST', '/admin/v1/network/config', { token: adminToken, body: { body: [1, 2] } })).status,
    ).toBe(400);
    expect((await call('GET', '/admin/v1/accounts/not-a-uuid', { token: adminToken })).status).toBe(400);
    expect([
      await count('accounts'),
      await count('audit_log'),
      await count('network_config_versions'),
    ]).toEqual([accounts, audit, versions]);
  });
});

describe('OpenAPI', () => {
  it('documents the admin, gate and status routes with their tags', async () => {
    const doc = (
      await server.app.inject({
        method: 'GET',
        url: '/openapi.json',
        headers: { authorization: `Bearer ${adminToken}` },
      })
    ).json();
    for (const p of [
      '/admin/v1/accounts',
      '/admin/v1/namespaces/{id}/topups',
      '/gate/v1/nodes/bind',
      '/status/v1',
    ])
      expect(Object.keys(doc.paths)).toContain(p);
    expect(doc.paths['/gate/v1/nodes/bind'].post.tags).toEqual(['gate']);
    expect(doc.paths['/admin/v1/accounts'].post.security).toEqual([{ adminToken: [] }]);
  });
});

describe('gate API', () => {
  it('refuses missing, malformed and unknown account tokens', async () => {
    expect((await call('GET', '/gate/v1/account')).status).toBe(401);
    expect((await call('GET', '/gate/v1/account', { token: adminToken })).status).toBe(401);
    const forged = `rtya_${'a'.repeat(12)}_${'b'.repeat(43)}`;
    expect((await call('GET', '/gate/v1/account', { token: forged })).status).toBe(401);
  });

  it('issues further account tokens once each and revokes them', async () => {
    const acct = await newAccount();
    const second = await call('POST', `/admin/v1/accounts/${acct.id}/tokens`, { token: adminToken });
    expect(second.status).toBe(201);
    expect(second.json.token).toMatch(/^rtya_/);
    expect((await call('GET', '/gate/v1/account', { token: second.json.token })).json.account.id).toBe(
      acct.id,
    );
    const first = await stores.db.pool.query<{ id: string }>(
      'select id from account_tokens where account_id = $1 and id <> $2',
      [acct.id, second.json.id],
    );
    const rv = await call('POST', `/admin/v1/accounts/${acct.id}/tokens/${first.rows[0]!.id}/revoke`, {
      token: adminToken,
    });
    expect(rv.status).toBe(200);
    expect((await call('GET', '/gate/v1/account', { token: acct.token })).status).toBe(401);
    expect((await call('GET', '/gate/v1/account', { token: second.json.token })).status).toBe(200);
    const unknown = await call('POST', `/admin/v1/accounts/${randomUUID()}/tokens`, { token: adminToken });
    expect(unknown.status).toBe(404);
  });

  it("an account token acts only on its own account: another account's namespace and jobs are 404", async () => {
    const a = await newAccount();
    const b = await newAccount();
    const nsA = await call('POST', '/gate/v1/namespaces', { token: a.token, body: { name: 'a' } });
    const nsB = await call('POST', '/gate/v1/namespaces', { token: b.token, body: { name: 'b' } });
    expect(nsA.status).toBe(201);
    const me = await call('GET', '/gate/v1/account', { token: a.token });
    expect(me.json.account.id).toBe(a.id);
    expect(me.json.namespaces.map((n: Json) => n.id)).toEqual([nsA.json.id]);

    // Records of a job in A's namespace.
    const bb = server.backbone;
    const recorder = new RecorderService({
      repo: bb.records.repo,
      blobs: bb.records.blobs,
      policies: bb.records.policies,
      log: testLog,
      options: { largePayloadBytes: 1024 * 1024, maxDocumentBytes: 4 * 1024 * 1024 },
    });
    const events = jobEvents({
      namespaceId: nsA.json.id,
      at: new Date(Date.now() - 5_000),
      model: 'llama-x',
    });
    await recorder.record(events);
    const jobId = (events[0] as { jobId: string }).jobId;

    const mine = await call('GET', `/gate/v1/namespaces/${nsA.json.id}/jobs?limit=10`, { token: a.token });
    expect(mine.status).toBe(200);
    expect(mine.json.data.map((j: Json) => j._id ?? j.jobId)).toContain(jobId);
    const trace = await call('GET', `/gate/v1/namespaces/${nsA.json.id}/jobs/${jobId}`, { token: a.token });
    expect(trace.status).toBe(200);
    const exp = await call('GET', `/gate/v1/namespaces/${nsA.json.id}/export?format=jsonl`, {
      token: a.token,
    });
    expect(exp.status).toBe(200);
    expect(exp.text).toContain(jobId);
    const csv = await call('GET', `/admin/v1/namespaces/${nsA.json.id}/export?format=csv`, {
      token: adminToken,
    });
    expect(csv.status).toBe(200);
    expect(csv.text).toContain(jobId);
    const adminList = await call('GET', `/admin/v1/namespaces/${nsA.json.id}/jobs`, { token: adminToken });
    expect(adminList.json.data).toHaveLength(1);

    const keysBefore = await count('api_keys');
    const refused = [
      await call('GET', `/gate/v1/namespaces/${nsA.json.id}/jobs`, { token: b.token }),
      await call('GET', `/gate/v1/namespaces/${nsA.json.id}/jobs/${jobId}`, { token: b.token }),
      await call('GET', `/gate/v1/namespaces/${nsA.json.id}/export`, { token: b.token }),
      await call('GET', `/gate/v1/namespaces/${nsA.json.id}/balance`, { token: b.token }),
      await call('POST', `/gate/v1/namespaces/${nsA.json.id}/keys`, { token: b.token, body: { name: 'x' } }),
      // A's job read through B's own namespace: not there either.
      await call('GET', `/gate/v1/namespaces/${nsB.json.id}/jobs/${jobId}`, { token: b.token }),
    ];
    expect(refused.map((r) => r.status)).toEqual([404, 404, 404, 404, 404, 404]);
    expect(await count('api_keys')).toBe(keysBefore);
    // A's key cannot be revoked through B's token.
    const keyA = await call('POST', `/gate/v1/namespaces/${nsA.json.id}/keys`, {
      token: a.token,
      body: { name: 'a' },
    });
    expect(
      (
        await call('POST', `/gate/v1/namespaces/${nsA.json.id}/keys/${keyA.json.id}/revoke`, {
          token: b.token,
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await call('POST', `/gate/v1/namespaces/${nsB.json.id}/keys/${keyA.json.id}/revoke`, {
          token: b.token,
        })
      ).status,
    ).toBe(404);
    expect((await call('GET', '/v1/models', { token: keyA.json.secret })).status).toBe(200);
  });

  it('every admin and gate change is in the audit log and the chain verifies', async () => {
    const actions = await stores.db.pool.query<{ actor: string; action: string }>(
      'select actor, action from audit_log order by seq',
    );
    const seen = new Set(actions.rows.map((r) => r.action));
    for (const a of [
      'account.create',
      'namespace.create',
      'api_key.create',
      'api_key.revoke',
      'namespace.topup',
    ])
      expect(seen).toContain(a);
    expect(actions.rows.some((r) => r.actor.startsWith('account:'))).toBe(true);
    const v = await call('GET', '/admin/v1/audit/verify', { token: adminToken });
    expect(v.json).toMatchObject({ ok: true, problems: [] });
    expect(v.json.entries).toBe(actions.rows.length);
    expect((await server.backbone.audit.verify()).problems).toEqual([]);
  });
});
