// Node binding (signed messages), node flags, Subclouds, network config, queue endpoints and the public Status
// API over a whole backbone on the real stores, through app.inject.
import { randomBytes, randomUUID } from 'node:crypto';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import { uniqueName } from '../../../test/harness.js';
import { heartbeat } from '../../../test/live-harness.js';
import { signingText, verifyNetworkConfig, type NetworkConfigVersion } from '../../modules/network/index.js';
import type { RunningServer } from '../../app/serve.js';
import { RedisKeys } from '../../stores/redis/keys.js';

let stores: TestStores;
let server: RunningServer;
let adminToken: string;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function call(
  method: 'GET' | 'POST' | 'DELETE',
  url: string,
  opts: { token?: string; body?: unknown } = {},
): Promise<{ status: number; json: Json; headers: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await server.app.inject({
    method,
    url,
    headers,
    ...(opts.body !== undefined ? { payload: JSON.stringify(opts.body) } : {}),
  });
  return { status: res.statusCode, json: res.json(), headers: res.headers };
}

const count = async (table: string) =>
  Number((await stores.db.pool.query<{ n: string }>(`select count(*)::text as n from ${table}`)).rows[0]!.n);

async function newAccount(): Promise<{ id: string; token: string }> {
  const r = await call('POST', '/admin/v1/accounts', {
    token: adminToken,
    body: { email: `${uniqueName('node')}@example.test` },
  });
  return { id: r.json.account.id, token: r.json.token };
}

/** A "node.bind" message signed by `signer` (the node's own key unless a forgery is tested). */
async function bindMessage(
  nodeKey: `0x${string}`,
  body: Record<string, unknown>,
  over: { ts?: number; signer?: `0x${string}`; type?: string } = {},
) {
  const node = privateKeyToAccount(nodeKey);
  const m = {
    v: 1 as const,
    type: over.type ?? 'node.bind',
    node: node.address.toLowerCase(),
    ts: over.ts ?? Date.now(),
    nonce: randomBytes(16).toString('hex'),
    body,
  };
  const sig = await privateKeyToAccount(over.signer ?? nodeKey).signMessage({ message: signingText(m) });
  return { ...m, sig };
}

beforeAll(async () => {
  stores = await createTestStores();
  adminToken = stores.config().ADMIN_TOKEN;
  // A long cache TTL so that "served from the cache" does not depend on timing.
  server = await startTestServer(stores, {
    roles: 'gate,admin,status',
    overrides: { LIVE_CACHE_TTL_MS: 120_000 },
  });
});
afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

const nodeKey = generatePrivateKey();
const nodeAddress = privateKeyToAccount(nodeKey).address.toLowerCase();

describe('node binding', () => {
  let a: { id: string; token: string };
  let b: { id: string; token: string };
  const bind = (token: string, message: unknown) =>
    call('POST', '/gate/v1/nodes/bind', { token, body: { message } });

  beforeAll(async () => {
    a = await newAccount();
    b = await newAccount();
  });

  it('refuses bad signatures, stale timestamps, wrong types and another account, writing nothing', async () => {
    const body = {
      accountId: a.id,
      environment: 'testnet',
      region: 'eu',
      gpuModel: 'A100',
      gpuMemoryMb: 81920,
    };
    const before = [await count('nodes'), await count('audit_log')];
    const forged = await bindMessage(nodeKey, body, { signer: generatePrivateKey() });
    expect((await bind(a.token, forged)).status).toBe(401);
    const tampered = { ...(await bindMessage(nodeKey, body)), body: { ...body, region: 'us' } };
    expect((await bind(a.token, tampered)).status).toBe(401);
    const stale = await bindMessage(nodeKey, body, { ts: Date.now() - 10 * 60_000 });
    expect((await bind(a.token, stale)).status).toBe(401);
    expect((await bind(a.token, await bindMessage(nodeKey, body, { type: 'node.hello' }))).status).toBe(400);
    expect((await bind(b.token, await bindMessage(nodeKey, body))).status).toBe(403);
    expect((await bind('rtya_bad', await bindMessage(nodeKey, body))).status).toBe(401);
    expect((await bind(a.token, { ...(await bindMessage(nodeKey, body)), sig: '0x12' })).status).toBe(400);
    expect([await count('nodes'), await count('audit_log')]).toEqual(before);
  });

  it('a good signature binds once; a replayed nonce and a bind to another account are refused', async () => {
    const msg = await bindMessage(nodeKey, { accountId: a.id, environment: 'testnet', region: 'eu' });
    const ok = await bind(a.token, msg);
    expect(ok.status).toBe(201);
    expect(ok.json).toEqual({ address: nodeAddress, accountId: a.id });
    const row = await stores.db.pool.query(
      'select account_id, environment, region from nodes where address = $1',
      [nodeAddress],
    );
    expect(row.rows[0]).toMatchObject({ account_id: a.id, environment: 'testnet', region: 'eu' });
    const audit = await count('audit_log');
    const replay = await bind(a.token, msg);
    expect(replay.status).toBe(401);
    expect(replay.json.error.message).toContain('replayed');
    const other = await bind(
      b.token,
      await bindMessage(nodeKey, { accountId: b.id, environment: 'testnet' }),
    );
    expect(other.status).toBe(409);
    expect(await count('audit_log')).toBe(audit);
    const still = await stores.db.pool.query('select account_id from nodes where address = $1', [
      nodeAddress,
    ]);
    expect(still.rows[0]!.account_id).toBe(a.id);
    // Binding again to the same account (a fresh message) is accepted.
    expect(
      (
        await bind(
          a.token,
          await bindMessage(nodeKey, { accountId: a.id, environment: 'testnet', region: 'eu' }),
        )
      ).status,
    ).toBe(201);
  });
});

describe('node simulator contract over real HTTP', () => {
  it('POST /admin/v1/accounts → {account:{id}, token}; POST /gate/v1/nodes/bind → 201 {address, accountId}', async () => {
    const created = await fetch(`${server.url}/admin/v1/accounts`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ walletAddress: `0x${randomBytes(20).toString('hex')}` }),
    });
    expect(created.status).toBe(201);
    const { account, token } = (await created.json()) as { account: { id: string }; token: string };
    const key = generatePrivateKey();
    const message = await bindMessage(key, {
      accountId: account.id,
      environment: 'mainnet',
      gpuMemoryMb: 24576,
    });
    const bound = await fetch(`${server.url}/gate/v1/nodes/bind`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message }),
    });
    expect(bound.status).toBe(201);
    expect(await bound.json()).toEqual({
      address: privateKeyToAccount(key).address.toLowerCase(),
      accountId: account.id,
    });
  });
});

describe('node flags and Subclouds', () => {
  it('set and cleared flags reach the live state', async () => {
    const bb = server.backbone;
    await bb.nodes.presence.ingest(heartbeat(nodeAddress, { environment: 'testnet' }));
    const set = await call('POST', `/admin/v1/nodes/${nodeAddress}/flags`, {
      token: adminToken,
      body: { flag: 'pause', reason: 'maintenance', expiresInMs: 600_000 },
    });
    expect(set.status).toBe(201);
    expect((await bb.nodes.presence.viewNode('testnet', nodeAddress, 'admin')).flags).toContain('pause');
    const view = await call('GET', `/admin/v1/nodes/${nodeAddress}`, { token: adminToken });
    expect(view.status).toBe(200);
    expect(view.json.live.online).toBe(true);
    expect(view.json.live.flags).toContain('pause');
    expect(view.json.flags[0]).toMatchObject({ flag: 'pause', reason: 'maintenance', setBy: 'admin' });
    expect(view.json.flags[0].expiresAt).not.toBeNull();

    const clear = await call('DELETE', `/admin/v1/nodes/${nodeAddress}/flags/pause`, { token: adminToken });
    expect(clear.status).toBe(200);
    expect((await bb.nodes.presence.viewNode('testnet', nodeAddress, 'admin')).flags).not.toContain('pause');
    expect(
      (await call('DELETE', `/admin/v1/nodes/${nodeAddress}/flags/pause`, { token: adminToken })).status,
    ).toBe(404);
    const unknown = `0x${randomBytes(20).toString('hex')}`;
    expect(
      (
        await call('POST', `/admin/v1/nodes/${unknown}/flags`, {
          token: adminToken,
          body: { flag: 'freeze', reason: 'x' },
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await call('POST', `/admin/v1/nodes/${nodeAddress}/flags`, {
          token: adminToken,
          body: { flag: 'delete', reason: 'x' },
        })
      ).status,
    ).toBe(400);
  });

  it('creates a Subcloud and adds and removes a member', async () => {
    const s = await call('POST', '/admin/v1/subclouds', {
      token: adminToken,
      body: { name: 'lab-1', environment: 'testnet' },
    });
    expect(s.status).toBe(201);
    const add = await call('POST', `/admin/v1/subclouds/${s.json.id}/members`, {
      token: adminToken,
      body: { address: nodeAddress },
    });
    expect(add.status).toBe(201);
    const members = await stores.db.pool.query(
      'select node_address from subcloud_members where subcloud_id = $1',
      [s.json.id],
    );
    expect(members.rows).toEqual([{ node_address: nodeAddress }]);
    const missing = await call('POST', `/admin/v1/subclouds/${randomUUID()}/members`, {
      token: adminToken,
      body: { address: nodeAddress },
    });
    expect(missing.status).toBe(404);
    const del = await call('DELETE', `/admin/v1/subclouds/${s.json.id}/members/${nodeAddress}`, {
      token: adminToken,
    });
    expect(del.status).toBe(200);
    expect(await count('subcloud_members')).toBe(0);
    expect(
      (
        await call('POST', '/admin/v1/subclouds', {
          token: adminToken,
          body: { name: 'lab-1', environment: 'testnet' },
        })
      ).status,
    ).toBe(409);
  });
});

describe('network config and queues', () => {
  it('publishes signed versions that verify against the network address', async () => {
    const body = { heartbeatIntervalMs: 5000, models: ['llama3-8b'] };
    const p = await call('POST', '/admin/v1/network/config', { token: adminToken, body: { body } });
    expect(p.status).toBe(201);
    expect(p.json.version).toBe(1);
    const published = p.json as NetworkConfigVersion;
    expect(await verifyNetworkConfig(published, server.backbone.networkConfig.networkAddress)).toBe(true);
    expect(
      await verifyNetworkConfig(
        { ...published, body: { ...body, x: 1 } },
        server.backbone.networkConfig.networkAddress,
      ),
    ).toBe(false);
    expect(
      (await call('POST', '/admin/v1/network/config', { token: adminToken, body: { body } })).status,
    ).toBe(409);
    const list = await call('GET', '/admin/v1/network/config', { token: adminToken });
    expect(list.json.networkAddress).toBe(server.backbone.networkConfig.networkAddress);
    expect(list.json.versions.map((v: Json) => v.version)).toEqual([1]);
  });

  it('reports queue health and lists, replays and purges the quarantine by selection', async () => {
    const h = await call('GET', '/admin/v1/queues', { token: adminToken });
    expect(h.status).toBe(200);
    expect(Array.isArray(h.json.queues)).toBe(true);
    expect((await call('GET', '/admin/v1/quarantine?limit=5', { token: adminToken })).json.data).toEqual([]);
    expect((await call('POST', '/admin/v1/quarantine/replay', { token: adminToken, body: {} })).status).toBe(
      400,
    );
    const r = await call('POST', '/admin/v1/quarantine/replay', {
      token: adminToken,
      body: { all: true, limit: 10 },
    });
    expect(r.json).toEqual({ replayed: 0 });
    const p = await call('POST', '/admin/v1/quarantine/purge', {
      token: adminToken,
      body: { jobIds: [randomUUID()] },
    });
    expect(p.json).toEqual({ purged: 0 });
  });
});

describe('status API', () => {
  it('returns nodes, queues, requests per second and latency, then serves bursts from the cache', async () => {
    const ns = randomUUID();
    const insertJob = (latencyMs: number, finishedAgoMs: number) =>
      stores.db.pool.query(
        `insert into jobs (id, namespace_id, model, mode, priority, status, max_cost, created_at, finished_at)
         values ($1, $2, 'llama3-8b', 'sync', 'urgent', 'succeeded', 10,
                 now() - make_interval(secs => ($3::double precision + $4::double precision) / 1000),
                 now() - make_interval(secs => $4::double precision / 1000))`,
        [randomUUID(), ns, latencyMs, finishedAgoMs],
      );
    for (const ms of [100, 200, 300]) await insertJob(ms, 1_000);
    await insertJob(5_000, 5 * 60_000); // outside the minute
    const keys = new RedisKeys(stores.config().REDIS_KEY_PREFIX);
    await server.backbone.redis.del(keys.statusSummaryCache());

    const first = await server.app.inject({ method: 'GET', url: '/status/v1' });
    expect(first.statusCode).toBe(200);
    expect(first.headers['x-cache']).toBe('miss');
    const s = first.json();
    expect(s.lastMinute).toMatchObject({ finished: 3, failed: 0, requestsPerS: 0.05, latencyP50Ms: 200 });
    expect(s.lastMinute.latencyP99Ms).toBeGreaterThanOrEqual(290);
    expect(s.lastMinute.latencyP99Ms).toBeLessThanOrEqual(300);
    expect(s.environments.testnet.onlineNodes).toBe(1);
    expect(s.environments.testnet.gpus).toBeGreaterThanOrEqual(1);
    expect(s.environments.testnet.models.map((m: Json) => m.model)).toContain('llama3-8b');
    expect(typeof s.queues).toBe('object');

    await insertJob(50, 500);
    const second = await server.app.inject({ method: 'GET', url: '/status' });
    expect(second.headers['x-cache']).toBe('hit');
    expect(second.json()).toEqual(s);

    // A burst after the cache is dropped: one computation serves all of them.
    await server.backbone.redis.del(keys.statusSummaryCache());
    const burst = await Promise.all(
      Array.from({ length: 8 }, () => server.app.inject({ method: 'GET', url: '/status/v1' })),
    );
    const computed = new Set(burst.map((r) => r.json().computedAtMs));
    expect(computed.size).toBe(1);
    expect(burst[0]!.json().lastMinute.finished).toBe(4);
  });

  it("sums queue depths per environment, model and priority: no namespace's lane name is public", async () => {
    const b = server.backbone;
    const account = await b.accounts.createAccount({ email: `${randomUUID()}@example.test` });
    const ns = await b.accounts.createNamespace({ accountId: account.id, name: 'private' });
    await b.ledger.topUp(ns.id, 1_000_000n, `seed-${ns.id}`);
    await b.jobs.submit({
      namespaceId: ns.id,
      model: 'private-model',
      environment: 'testnet',
      priority: 'bulk',
      maxTokens: 1,
      ttlMs: 60_000,
    });
    await b.redis.del(new RedisKeys(stores.config().REDIS_KEY_PREFIX).statusSummaryCache());
    const r = await server.app.inject({ method: 'GET', url: '/status/v1' });
    expect(r.body).not.toContain(ns.id);
    expect(Object.keys(r.json().queues)).toContain('rty.lane.testnet.private-model.bulk');
    // Records lag from the broker: what the recorder has not written yet, and nothing dead-lettered.
    expect(r.json().records).toEqual({ queuedMessages: expect.any(Number), deadLetteredMessages: 0 });
  });

  it('every change of this file is audited and the chain verifies', async () => {
    const r = await stores.db.pool.query<{ action: string }>('select action from audit_log order by seq');
    const seen = new Set(r.rows.map((x) => x.action));
    for (const a of [
      'account.create',
      'node.bind',
      'node.flag.set',
      'node.flag.clear',
      'subcloud.create',
      'subcloud.member.add',
      'subcloud.member.remove',
      'network_config.publish',
      'quarantine.replay',
      'quarantine.purge',
    ])
      expect(seen).toContain(a);
    const v = await call('GET', '/admin/v1/audit/verify', { token: adminToken });
    expect(v.json).toMatchObject({ ok: true, entries: r.rows.length, problems: [] });
  });
});
