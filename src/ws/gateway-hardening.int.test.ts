// The gateway's defences before and around the hello, on a real backbone over real sockets: the first frame
// that is not a hello ends the socket, an address that keeps failing hellos (or holds too many sockets in
// their hello) gets 429 at the upgrade, an unbound key's valid hello leaves no nonce behind, and job-message
// nonces are kept per session in memory (no Redis key) while replays stay refused.
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import { bindNodes, gatewayOverrides, newAgent } from '../../test/gateway-harness.js';
import { waitFor } from '../../test/routing-fixtures.js';
import type { RunningServer } from '../app/serve.js';
import { RedisKeys } from '../stores/redis/keys.js';
import { signNodeMessage } from '../modules/network/index.js';
import type { NodeAgent } from '../agent/node-agent.js';
import { NODE_WS_PATH, type ErrorFrame } from '../modules/network/index.js';

let stores: TestStores;
let server: RunningServer;
const extra: RunningServer[] = [];
let agents: NodeAgent[] = [];

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, { overrides: gatewayOverrides });
});
afterEach(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  agents = [];
  await Promise.all(extra.splice(0).map((s) => s.stop()));
});
afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

const wsUrl = (s: RunningServer) => new URL(NODE_WS_PATH, s.url.replace(/^http/, 'ws'));

/** Opens a socket: the open socket (with its received frames and close code), or the refused upgrade's status. */
async function open(
  s: RunningServer,
  headers?: Record<string, string>,
): Promise<
  | { ws: WebSocket; frames: ErrorFrame[]; closed: Promise<number> }
  | { status: number; retryAfter: string | undefined }
> {
  const ws = new WebSocket(wsUrl(s), headers ? { headers } : {});
  const frames: ErrorFrame[] = [];
  ws.on('message', (d) => frames.push(JSON.parse(d.toString()) as ErrorFrame));
  const closed = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, frames, closed }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined });
      res.resume();
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

async function openOk(s: RunningServer, headers?: Record<string, string>) {
  const r = await open(s, headers);
  if (!('ws' in r)) throw new Error(`upgrade refused with ${r.status}`);
  return r;
}

describe('gateway hardening', () => {
  it('before the hello, the first frame that is not a hello closes the socket: 2,000 junk frames get one answer', async () => {
    const { ws, frames, closed } = await openOk(server);
    for (let i = 0; i < 2_000; i++) ws.send(`junk ${i}`);
    expect(await closed).toBe(1008);
    expect(frames.length).toBeLessThanOrEqual(1);
    expect(frames.every((f) => f.reason === 'hello_required')).toBe(true);

    // JSON of another type as the first frame is refused the same way.
    const json = await openOk(server);
    json.ws.send(JSON.stringify({ type: 'job.result' }));
    expect(await json.closed).toBe(1008);
  });

  it("an unbound key's validly signed hello is refused without storing its nonce; a bound node's is stored", async () => {
    const b = server.backbone;
    const keys = new RedisKeys(b.config.REDIS_KEY_PREFIX);
    const stranger = privateKeyToAccount(generatePrivateKey());
    const nonce = randomBytes(16).toString('hex');
    const s = await openOk(server);
    s.ws.send(
      JSON.stringify(await signNodeMessage(stranger, 'node.hello', { environment: 'testnet' }, { nonce })),
    );
    expect(await s.closed).toBe(4003);
    expect(s.frames[0]?.reason).toBe('node_not_registered');
    expect(await b.redis.exists(keys.nodeNonce(stranger.address.toLowerCase(), nonce))).toBe(0);

    const bound = privateKeyToAccount(generatePrivateKey());
    await bindNodes(b, [bound.address.toLowerCase()]);
    const ok = await openOk(server);
    ok.ws.send(
      JSON.stringify(await signNodeMessage(bound, 'node.hello', { environment: 'testnet' }, { nonce })),
    );
    await waitFor('hello.ok', () => ok.frames.some((f) => (f.type as string) === 'hello.ok'));
    expect(await b.redis.exists(keys.nodeNonce(bound.address.toLowerCase(), nonce))).toBe(1);
    ok.ws.close();
  });

  it('job-message nonces live in the session (no Redis key); a replay on the session is still refused', async () => {
    const b = server.backbone;
    const keys = new RedisKeys(b.config.REDIS_KEY_PREFIX);
    const agent = newAgent(server);
    agents.push(agent);
    await bindNodes(b, [agent.address]);
    await agent.start();
    const refused: ErrorFrame[] = [];
    agent.onFrame((f) => f.type === 'error' && refused.push(f));
    const body = { jobId: '00000000-0000-4000-8000-000000000009', fencingToken: '1', reason: 'x' };
    const m = await signNodeMessage(agent.account, 'job.error', body);
    agent.sendRaw(m);
    await waitFor('first refusal', () => refused.length >= 1);
    agent.sendRaw(m);
    await waitFor('second refusal', () => refused.length >= 2);
    expect(refused.map((f) => f.reason)).toEqual(['not_lease_holder', 'replayed_nonce']);
    expect(await b.redis.exists(keys.nodeNonce(agent.address, m.nonce))).toBe(0);
    expect(agent.connected).toBe(true);
  });

  it('an address that keeps failing its hello gets 429 with Retry-After at the upgrade', async () => {
    const s = await startTestServer(stores, {
      roles: 'io',
      overrides: { ...gatewayOverrides, WS_FAILED_HELLOS_PER_ADDRESS_PER_MIN: 3 },
    });
    extra.push(s);
    for (let i = 0; i < 3; i++) {
      const c = await openOk(s);
      c.ws.send('not a hello');
      expect(await c.closed).toBe(1008);
    }
    // The gateway counts the failure when it sees the close: eventually the next upgrade is refused.
    let r: Awaited<ReturnType<typeof open>> | undefined;
    await waitFor('429 at the upgrade', async () => {
      r = await open(s);
      if ('ws' in r) {
        r.ws.close();
        await r.closed;
        return false;
      }
      return true;
    });
    expect(r).toMatchObject({ status: 429 });
    expect(Number((r as { retryAfter: string }).retryAfter)).toBeGreaterThanOrEqual(1);
    const rejected = await s.backbone.metrics.nodeMessagesRejected.get();
    expect(rejected.values.find((v) => v.labels.reason === 'hello_budget')?.value).toBeGreaterThanOrEqual(1);
  });

  it('an address holding WS_PENDING_HELLOS_PER_ADDRESS sockets in their hello gets 429 until one ends', async () => {
    const s = await startTestServer(stores, {
      roles: 'io',
      overrides: { ...gatewayOverrides, WS_PENDING_HELLOS_PER_ADDRESS: 2 },
    });
    extra.push(s);
    const a = await openOk(s);
    const c = await openOk(s);
    expect(await open(s)).toMatchObject({ status: 429 });
    a.ws.close();
    await a.closed;
    await waitFor('a slot again', async () => {
      const r = await open(s);
      if ('ws' in r) r.ws.terminate();
      return 'ws' in r;
    });
    c.ws.close();
  });

  it('behind a trusted proxy the budget is per forwarded client; an untrusted peer cannot pick its address', async () => {
    const failThrice = async (s: RunningServer, client: string) => {
      for (let i = 0; i < 3; i++) {
        const c = await openOk(s, { 'x-forwarded-for': client });
        c.ws.send('not a hello');
        expect(await c.closed).toBe(1008);
      }
      await waitFor('429 for the failing client', async () => {
        const r = await open(s, { 'x-forwarded-for': client });
        if ('ws' in r) r.ws.terminate();
        return !('ws' in r);
      });
    };
    const trusted = await startTestServer(stores, {
      roles: 'io',
      overrides: {
        ...gatewayOverrides,
        WS_FAILED_HELLOS_PER_ADDRESS_PER_MIN: 3,
        HTTP_TRUSTED_PROXIES: ['127.0.0.1', '::1'],
      },
    });
    extra.push(trusted);
    await failThrice(trusted, '203.0.113.7');
    expect(await open(trusted, { 'x-forwarded-for': '203.0.113.7' })).toMatchObject({ status: 429 });
    // Another node behind the same proxy still gets in, and completes its hello.
    const bound = privateKeyToAccount(generatePrivateKey());
    await bindNodes(trusted.backbone, [bound.address.toLowerCase()]);
    const ok = await openOk(trusted, { 'x-forwarded-for': '203.0.113.8' });
    ok.ws.send(JSON.stringify(await signNodeMessage(bound, 'node.hello', { environment: 'testnet' })));
    await waitFor('hello.ok', () => ok.frames.some((f) => (f.type as string) === 'hello.ok'));
    ok.ws.close();

    // Without trusted proxies the header is ignored: the socket's own address is what gets charged.
    const direct = await startTestServer(stores, {
      roles: 'io',
      overrides: { ...gatewayOverrides, WS_FAILED_HELLOS_PER_ADDRESS_PER_MIN: 3 },
    });
    extra.push(direct);
    await failThrice(direct, '203.0.113.7');
    expect(await open(direct, { 'x-forwarded-for': '203.0.113.8' })).toMatchObject({ status: 429 });
  });

  it('hellos that fail on our side (a store down) or a bare disconnect do not charge the address', async () => {
    const s = await startTestServer(stores, {
      roles: 'io',
      overrides: { ...gatewayOverrides, WS_FAILED_HELLOS_PER_ADDRESS_PER_MIN: 2 },
    });
    extra.push(s);
    const bound = privateKeyToAccount(generatePrivateKey());
    await bindNodes(s.backbone, [bound.address.toLowerCase()]);
    for (let i = 0; i < 3; i++) {
      const c = await openOk(s);
      c.ws.close();
      await c.closed;
    }
    s.backbone.redis.disconnect();
    for (let i = 0; i < 4; i++) {
      const c = await openOk(s);
      c.ws.send(JSON.stringify(await signNodeMessage(bound, 'node.hello', { environment: 'testnet' })));
      expect(await c.closed).not.toBe(1000);
      expect(c.frames.some((f) => (f.type as string) === 'hello.ok')).toBe(false);
    }
    // Four failed hellos and three bare disconnects, none the client's doing: still admitted.
    const again = await openOk(s);
    again.ws.terminate();
  });
});
