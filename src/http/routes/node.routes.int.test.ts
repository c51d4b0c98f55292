// Node HTTP routes on a running backbone: register, heartbeat and config sync with signed messages, and
// the refusals (bad signature, stale timestamp, replayed nonce → 401 with the reason; unbound → 403).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePrivateKey, privateKeyToAccount, type LocalAccount } from 'viem/accounts';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import { bindNodes, newAgent } from '../../../test/gateway-harness.js';
import { waitFor } from '../../../test/routing-fixtures.js';
import { heartbeat } from '../../../test/live-harness.js';
import { verifyNetworkConfig, type SignedNodeMessage } from '../../modules/network/index.js';
import type { RunningServer } from '../../app/serve.js';
import { signNodeMessage } from '../../modules/network/index.js';

let stores: TestStores;
let server: RunningServer;

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, { roles: 'io' });
});
afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

/** The fields the tests read from the routes' replies (error bodies and config sync). */
interface Reply {
  error: { message: string; code: string };
  upToDate: boolean;
  config: { version: number; digest: string; body: Record<string, unknown>; signature: string };
  [field: string]: unknown;
}

async function post(path: string, msg: SignedNodeMessage): Promise<{ status: number; body: Reply }> {
  const res = await server.app.inject({ method: 'POST', url: path, payload: msg });
  return { status: res.statusCode, body: res.json<Reply>() };
}

async function boundNode(): Promise<LocalAccount> {
  const account = privateKeyToAccount(generatePrivateKey());
  await bindNodes(server.backbone, [account.address.toLowerCase()]);
  return account;
}

describe('node HTTP routes', () => {
  it('register updates hardware info and returns the network identity; heartbeat makes the node online', async () => {
    const b = server.backbone;
    const node = await boundNode();
    const address = node.address.toLowerCase();
    const reg = await post(
      '/v1/nodes/register',
      await signNodeMessage(node, 'node.register', {
        environment: 'testnet',
        region: 'eu',
        gpuModel: 'A100',
        gpuMemoryMb: 81920,
      }),
    );
    expect(reg.status).toBe(200);
    expect(reg.body).toMatchObject({
      address,
      environment: 'testnet',
      heartbeatIntervalMs: b.config.HEARTBEAT_INTERVAL_MS,
      networkAddress: b.networkConfig.networkAddress,
      wsPath: '/v1/nodes/ws',
    });
    const row = await b.pool.query<{ region: string; gpu_model: string; gpu_memory_mb: number }>(
      'select region, gpu_model, gpu_memory_mb from nodes where address = $1',
      [address],
    );
    expect(row.rows[0]).toEqual({ region: 'eu', gpu_model: 'A100', gpu_memory_mb: 81920 });

    const hb = await post(
      '/v1/nodes/heartbeat',
      await signNodeMessage(node, 'node.heartbeat', heartbeat(address, { environment: 'testnet' })),
    );
    expect(hb.status).toBe(200);
    // Online by its heartbeat, but not dispatchable: no gateway session is open for it (issue 16).
    expect(hb.body).toMatchObject({ accepted: true, eligible: false });
    const view = await b.nodes.presence.viewNode('testnet', address, 'admin');
    expect(view.online).toBe(true);

    const other = privateKeyToAccount(generatePrivateKey()).address.toLowerCase();
    const mismatch = await post(
      '/v1/nodes/heartbeat',
      await signNodeMessage(node, 'node.heartbeat', heartbeat(other, { environment: 'testnet' })),
    );
    expect(mismatch.status).toBe(400);
  });

  it('config sync returns the latest signed version, then up to date', async () => {
    const b = server.backbone;
    const node = await boundNode();
    const none = await post('/v1/nodes/config', await signNodeMessage(node, 'node.config', {}));
    expect(none.body).toEqual({ upToDate: true, version: null });
    await b.networkConfig.publish({ heartbeatIntervalMs: 5000, minAgent: '1.0.0' }, 'test');
    const sync = await post('/v1/nodes/config', await signNodeMessage(node, 'node.config', {}));
    expect(sync.status).toBe(200);
    expect(sync.body.upToDate).toBe(false);
    expect(await verifyNetworkConfig(sync.body.config, b.networkConfig.networkAddress)).toBe(true);
    const again = await post(
      '/v1/nodes/config',
      await signNodeMessage(node, 'node.config', { digest: sync.body.config.digest }),
    );
    expect(again.body).toEqual({ upToDate: true, version: sync.body.config.version });
  });

  it('refuses bad signatures, stale timestamps, replayed nonces (401 with the reason) and unbound nodes (403)', async () => {
    const node = await boundNode();
    for (const path of ['/v1/nodes/register', '/v1/nodes/heartbeat', '/v1/nodes/config']) {
      const type = `node.${path.split('/').pop()}`;
      const body =
        type === 'node.heartbeat'
          ? heartbeat(node.address.toLowerCase(), { environment: 'testnet' })
          : type === 'node.register'
            ? { environment: 'testnet' }
            : {};
      const good = await signNodeMessage(node, type, body);
      const forged = await post(path, { ...good, nonce: `${good.nonce}x` });
      expect(forged.status).toBe(401);
      expect(forged.body.error.message).toMatch(/^bad_signature/);

      const stale = await post(path, await signNodeMessage(node, type, body, { ts: Date.now() - 3_600_000 }));
      expect(stale.status).toBe(401);
      expect(stale.body.error.message).toMatch(/^stale_timestamp/);

      expect((await post(path, good)).status).toBe(200);
      const replay = await post(path, good);
      expect(replay.status).toBe(401);
      expect(replay.body.error.message).toMatch(/^replayed_nonce/);

      const stranger = privateKeyToAccount(generatePrivateKey());
      const unbound = await post(path, await signNodeMessage(stranger, type, body));
      expect(unbound.status).toBe(403);
      expect(unbound.body.error.code).toBe('node_not_registered');
    }
    // A node registered but not bound to an account is refused too.
    const loose = privateKeyToAccount(generatePrivateKey());
    await server.backbone.nodes.admin.registerNode({
      address: loose.address.toLowerCase(),
      environment: 'testnet',
    });
    const r = await post('/v1/nodes/config', await signNodeMessage(loose, 'node.config', {}));
    expect(r.status).toBe(403);
  });

  it('documents the node routes in the OpenAPI document', async () => {
    const auth = { authorization: `Bearer ${stores.config().ADMIN_TOKEN}` };
    expect((await server.app.inject({ url: '/openapi.json' })).statusCode).toBe(401);
    const doc = (await server.app.inject({ url: '/openapi.json', headers: auth })).json();
    for (const p of ['/v1/nodes/register', '/v1/nodes/heartbeat', '/v1/nodes/config'])
      expect(doc.paths[p]?.post).toBeDefined();
  });

  it('a node agent syncs the signed network config at start and again when a new version is published', async () => {
    const b = server.backbone;
    const agent = newAgent(server);
    await bindNodes(b, [agent.address]);
    try {
      await agent.start();
      const first = await b.networkConfig.latest();
      expect(agent.config?.digest).toBe(first?.digest);
      const next = await b.networkConfig.publish({ heartbeatIntervalMs: 2000, rev: Date.now() }, 'test');
      await waitFor('config synced on heartbeat', () => agent.config?.version === next.version);
      expect(agent.config?.digest).toBe(next.digest);
    } finally {
      await agent.stop();
    }
  });
});
