// Generated hostile input against every HTTP route of a whole backbone on the real stores (cloud, gate, admin,
// status, node routes), while a second tenant runs normal traffic. Asserted for every answer: no 5xx, an
// OpenAI-shaped error body, no driver text; afterwards: nothing stored for refused requests, and the second
// tenant's jobs, ledger and records are complete and consistent. Seeded, so a failure replays.
import { connect } from 'node:net';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import { heartbeat, openSessions, randomAddress } from '../../test/live-harness.js';
import { waitForInvariants } from '../cli/invariants.js';
import type { NodeExecutor, NodeResult } from '../modules/jobs/index.js';
import type { RunningServer } from '../app/serve.js';
import { signNodeMessage } from '../modules/network/index.js';
import { baseBodies, mutate, rng, type Case, type RouteSpec } from '../../test/hostile-cases.js';

const executor: NodeExecutor = {
  async run(_lease, job): Promise<NodeResult> {
    if (job.request?.kind === 'embedding') {
      const input = job.request.body.input;
      const n = Array.isArray(input) ? input.length : 1;
      return {
        tokensIn: n,
        tokensOut: 0,
        output: '',
        embeddings: Array.from({ length: n }, () => [0.5, -0.25]),
      };
    }
    return { tokensIn: 3, tokensOut: 2, output: 'fine', finishReason: 'stop' };
  },
};

const MODEL = 'llama3-8b';
const LIMIT = 64 * 1024;
const SEED = Number(process.env.HOSTILE_SEED ?? 20261202);
const CASES_PER_ROUTE = Number(process.env.HOSTILE_CASES_PER_ROUTE ?? 88);

/** Words that only a driver, a database or a stack trace would put in a body. */
const DRIVER_TEXT =
  /SQLSTATE|violates|duplicate key|invalid byte sequence|unsupported Unicode escape|invalid input syntax|relation "|column "|syntax error at|Mongo[A-Z]\w*Error|E11000|ECONNREFUSED|ECONNRESET|ReplyError|WRONGTYPE|RangeError|TypeError|Cannot read propert|Maximum call stack|\n\s+at \S+ \(|\.ts:\d+:\d+/;

let stores: TestStores;
let server: RunningServer;
let admin: string;
interface Tenant {
  accountId: string;
  namespaceId: string;
  apiKey: string;
  apiKeyId: string;
  accountToken: string;
}
let attacker: Tenant;
let heartbeats: NodeJS.Timeout | undefined;
let victim: Tenant;

async function newTenant(name: string): Promise<Tenant> {
  const b = server.backbone;
  const account = await b.accounts.createAccount({ email: `${name}-${Date.now()}@hostile.example` });
  const ns = await b.accounts.createNamespace({ accountId: account.id, name });
  await b.ledger.topUp(ns.id, 10_000_000_000n, `seed-${name}`);
  const key = await b.accounts.createApiKey({ namespaceId: ns.id, name: 'k' });
  const token = await b.accounts.createAccountToken(account.id);
  return {
    accountId: account.id,
    namespaceId: ns.id,
    apiKey: key.plaintext,
    apiKeyId: key.key.id,
    accountToken: token.plaintext,
  };
}

beforeAll(async () => {
  stores = await createTestStores();
  admin = stores.config().ADMIN_TOKEN;
  server = await startTestServer(stores, {
    roles: 'cloud,io,gate,admin,status,workers',
    executor,
    overrides: {
      HTTP_BODY_LIMIT_BYTES: LIMIT,
      PRICE_PER_TOKEN_MICRO: 1,
      RATE_LIMIT_KEY_PER_S: 1_000_000,
      RATE_LIMIT_KEY_BURST: 1_000_000,
      RATE_LIMIT_NAMESPACE_PER_S: 1_000_000,
      RATE_LIMIT_NAMESPACE_BURST: 1_000_000,
      RECORDS_CONSUMER_BATCH_MAX_WAIT_MS: 20,
    },
  });
  const b = server.backbone;
  const operator = await b.accounts.createAccount({ email: `operator-${Date.now()}@hostile.example` });
  const address = randomAddress();
  await b.nodes.admin.registerNode({ address, environment: 'testnet', accountId: operator.id });
  await openSessions(b.nodes, [{ address, environment: 'testnet' }]);
  const beat = () =>
    b.nodes.presence.ingest(
      heartbeat(address, {
        environment: 'testnet',
        models: [{ name: MODEL, version: 'v1', active: true }],
        capacity: 256,
      }),
    );
  await beat();
  // The node stays online for the whole run, like a real one (its presence has a TTL).
  heartbeats = setInterval(() => void beat().catch(() => undefined), 2_000);
  attacker = await newTenant('attacker');
  victim = await newTenant('victim');
}, 60_000);

afterAll(async () => {
  clearInterval(heartbeats);
  await server?.stop();
  await stores?.drop();
});

interface Answer {
  status: number;
  body: string;
  headers: Record<string, unknown>;
}

async function send(c: Case): Promise<Answer> {
  const res = await server.app.inject({
    method: c.method as 'GET',
    url: c.url,
    headers: c.headers,
    ...(c.payload !== undefined ? { payload: c.payload } : {}),
  });
  return { status: res.statusCode, body: res.body, headers: res.headers };
}

/** What is wrong with an answer (empty: nothing). */
function problemsOf(c: Case, a: Answer): string[] {
  const out: string[] = [];
  if (a.status >= 500) out.push(`status ${a.status}`);
  if (DRIVER_TEXT.test(a.body)) out.push(`driver text: ${DRIVER_TEXT.exec(a.body)?.[0]}`);
  if (a.status >= 400) {
    let e: Record<string, unknown> | undefined;
    try {
      e = (JSON.parse(a.body) as { error?: Record<string, unknown> }).error;
    } catch {
      // not JSON
    }
    const shaped =
      e !== undefined &&
      typeof e.message === 'string' &&
      typeof e.type === 'string' &&
      typeof e.code === 'string' &&
      'param' in e;
    if (!shaped) out.push('error body is not OpenAI-shaped');
  }
  return out.map(
    (p) => `${c.label}: ${p} (${c.method} ${c.url.slice(0, 120)} → ${a.status} ${a.body.slice(0, 160)})`,
  );
}

function routes(): RouteSpec[] {
  const a = attacker;
  const key = { authorization: `Bearer ${a.apiKey}` };
  const acct = { authorization: `Bearer ${a.accountToken}` };
  const adm = { authorization: `Bearer ${admin}` };
  const none = {};
  const job = '00000000-0000-4000-8000-000000000001';
  const nodeAddr = randomAddress();
  const r = (
    method: string,
    path: string,
    auth: Record<string, string>,
    params: Record<string, string> = {},
    query = '',
  ): RouteSpec => ({
    method,
    path,
    auth,
    params,
    query,
    body: baseBodies[`${method} ${path}`],
  });
  return [
    r('GET', '/v1/models', key),
    r('POST', '/v1/chat/completions', key),
    r('POST', '/v1/completions', key),
    r('POST', '/v1/embeddings', key),
    r('GET', '/v1/jobs/:id', key, { id: job }),
    r('POST', '/v1/jobs/:id/cancel', key, { id: job }),
    r('GET', '/gate/v1/account', acct),
    r('POST', '/gate/v1/namespaces', acct),
    r('POST', '/gate/v1/namespaces/:id/keys', acct, { id: a.namespaceId }),
    r('POST', '/gate/v1/namespaces/:id/keys/:keyId/revoke', acct, { id: a.namespaceId, keyId: job }),
    r('GET', '/gate/v1/namespaces/:id/balance', acct, { id: a.namespaceId }),
    r('GET', '/gate/v1/namespaces/:id/jobs', acct, { id: a.namespaceId }, `model=${MODEL}&limit=5`),
    r('GET', '/gate/v1/namespaces/:id/jobs/:jobId', acct, { id: a.namespaceId, jobId: job }),
    r('GET', '/gate/v1/namespaces/:id/export', acct, { id: a.namespaceId }, 'format=csv'),
    r('POST', '/gate/v1/nodes/bind', acct),
    r('POST', '/admin/v1/accounts', adm),
    r('POST', '/admin/v1/accounts/:id/tokens', adm, { id: job }),
    r('POST', '/admin/v1/accounts/:id/tokens/:tokenId/revoke', adm, { id: a.accountId, tokenId: job }),
    r('GET', '/admin/v1/accounts/:id', adm, { id: a.accountId }),
    r('POST', '/admin/v1/accounts/:id/namespaces', adm, { id: a.accountId }),
    r('POST', '/admin/v1/namespaces/:id/topups', adm, { id: a.namespaceId }),
    r('POST', '/admin/v1/namespaces/:id/keys', adm, { id: a.namespaceId }),
    r('POST', '/admin/v1/namespaces/:id/keys/:keyId/revoke', adm, { id: a.namespaceId, keyId: job }),
    r('GET', '/admin/v1/namespaces/:id/jobs', adm, { id: a.namespaceId }, 'status=succeeded&limit=3'),
    r('GET', '/admin/v1/namespaces/:id/jobs/:jobId', adm, { id: a.namespaceId, jobId: job }),
    r('GET', '/admin/v1/namespaces/:id/export', adm, { id: a.namespaceId }, 'format=jsonl'),
    r('POST', '/admin/v1/nodes/:address/flags', adm, { address: nodeAddr }),
    r('DELETE', '/admin/v1/nodes/:address/flags/:flag', adm, { address: nodeAddr, flag: 'pause' }),
    r('GET', '/admin/v1/nodes/:address', adm, { address: nodeAddr }),
    r('POST', '/admin/v1/subclouds', adm),
    r('POST', '/admin/v1/subclouds/:id/members', adm, { id: job }),
    r('DELETE', '/admin/v1/subclouds/:id/members/:address', adm, { id: job, address: nodeAddr }),
    r('POST', '/admin/v1/network/config', adm),
    r('GET', '/admin/v1/network/config', adm, {}, 'limit=2'),
    r('GET', '/admin/v1/queues', adm),
    r('GET', '/admin/v1/quarantine', adm, {}, 'limit=2'),
    r('POST', '/admin/v1/quarantine/replay', adm),
    r('POST', '/admin/v1/quarantine/purge', adm),
    r('GET', '/admin/v1/audit/verify', adm),
    r('GET', '/status/v1', none),
    r('GET', '/healthz', none),
    r('GET', '/metrics', adm),
    r('GET', '/openapi.json', adm),
    r('POST', '/v1/nodes/register', none),
    r('POST', '/v1/nodes/heartbeat', none),
    r('POST', '/v1/nodes/config', none),
  ];
}

/** Signed node messages from a key bound to no account: valid envelopes to mutate. */
async function nodeBodies(): Promise<Record<string, unknown>> {
  const signer = privateKeyToAccount(generatePrivateKey());
  return {
    'POST /v1/nodes/register': await signNodeMessage(signer, 'node.register', { environment: 'testnet' }),
    'POST /v1/nodes/heartbeat': await signNodeMessage(signer, 'node.heartbeat', {
      environment: 'testnet',
      models: [],
    }),
    'POST /v1/nodes/config': await signNodeMessage(signer, 'node.config', {}),
    'POST /gate/v1/nodes/bind': {
      message: await signNodeMessage(signer, 'node.bind', {
        accountId: attacker.accountId,
        environment: 'testnet',
      }),
    },
  };
}

const count = async (sql: string, params: unknown[]) =>
  Number((await stores.db.pool.query<{ n: string }>(sql, params)).rows[0]!.n);

async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

describe('hostile input on every HTTP route', () => {
  it('no 5xx, OpenAI-shaped errors, no driver text, nothing stored when refused, the other tenant untouched', async () => {
    const random = rng(SEED);
    const signed = await nodeBodies();
    const specs = routes().map((s) => ({ ...s, body: signed[`${s.method} ${s.path}`] ?? s.body }));
    const cases: Case[] = [];
    for (const spec of specs)
      for (let i = 0; i < CASES_PER_ROUTE; i++) cases.push(mutate(spec, random, LIMIT));
    expect(cases.length).toBeGreaterThanOrEqual(4000);

    const auditBefore = await count('select count(*)::text as n from audit_log', []);
    const failures: string[] = [];
    let createdJobs = 0;
    let mutationsAccepted = 0;
    const statuses = new Map<number, number>();

    // The victim's normal traffic runs all along: sync chats through the same app.
    let victimDone = 0;
    let stop = false;
    const victimErrors: string[] = [];
    const victimTraffic = (async () => {
      while (!stop || victimDone < 40) {
        const res = await server.app.inject({
          method: 'POST',
          url: '/v1/chat/completions',
          headers: { authorization: `Bearer ${victim.apiKey}`, 'content-type': 'application/json' },
          payload: JSON.stringify({
            model: MODEL,
            messages: [{ role: 'user', content: `normal ${victimDone}` }],
            max_tokens: 8,
          }),
        });
        if (res.statusCode !== 200) victimErrors.push(`${res.statusCode} ${res.body.slice(0, 200)}`);
        victimDone += 1;
        // A steady client, not a flood: the machine's cores are shared with the stores.
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const t0 = Date.now();
    await pool(cases, 8, async (c) => {
      const a = await send(c);
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      failures.push(...problemsOf(c, a));
      const replayed = a.headers['idempotent-replayed'] === 'true';
      if (c.submitsJob && a.status >= 200 && a.status < 300 && !replayed) createdJobs += 1;
      if (c.method !== 'GET' && a.status >= 200 && a.status < 300) mutationsAccepted += 1;
    });
    const elapsedMs = Date.now() - t0;
    stop = true;
    await victimTraffic;

    expect(failures.slice(0, 25)).toEqual([]);
    // The generator reached the handlers too, not only the validators.
    expect([...statuses.keys()].filter((s) => s < 300).length).toBeGreaterThan(0);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(cases.length / 4);
    expect(elapsedMs).toBeGreaterThan(0);

    // Nothing stored for what was refused: one job row and one hold per accepted submission, no more.
    const attackerJobs = await count('select count(*)::text as n from jobs where namespace_id = $1', [
      attacker.namespaceId,
    ]);
    const attackerHolds = await count(
      'select count(*)::text as n from credit_holds where namespace_id = $1',
      [attacker.namespaceId],
    );
    expect({ attackerJobs, attackerHolds }).toEqual({
      attackerJobs: createdJobs,
      attackerHolds: createdJobs,
    });
    const auditAfter = await count('select count(*)::text as n from audit_log', []);
    expect(auditAfter - auditBefore).toBeLessThanOrEqual(mutationsAccepted);

    // The other tenant: every request answered, and its jobs, ledger and records complete.
    expect(victimErrors).toEqual([]);
    const b = server.backbone;
    const scope = {
      pool: b.pool,
      ledger: b.ledger,
      redis: b.redis,
      redisPrefix: b.config.REDIS_KEY_PREFIX,
      mongo: b.mongo.db,
    };
    const victimChecks = await waitForInvariants(
      { ...scope, namespaceIds: [victim.namespaceId] },
      { timeoutMs: 30_000 },
    );
    expect(victimChecks.filter((c) => !c.ok)).toEqual([]);
    expect(
      await count('select count(*)::text as n from jobs where namespace_id = $1', [victim.namespaceId]),
    ).toBe(victimDone);
    // And the sender's own accepted jobs are consistent too (terminal, settled once, documented).
    const attackerChecks = await waitForInvariants(
      { ...scope, namespaceIds: [attacker.namespaceId] },
      { timeoutMs: 30_000 },
    );
    expect(attackerChecks.filter((c) => !c.ok)).toEqual([]);
  }, 240_000);

  it('over real sockets: oversized headers, malformed request lines and headers, bodies over the limit', async () => {
    const port = Number(new URL(server.url).port);
    const random = rng(SEED + 1);
    const exchange = (bytes: string, uploadBytes = 0) =>
      new Promise<{ text: string; error?: string }>((resolve) => {
        const s = connect(port, '127.0.0.1');
        let text = '';
        let error: string | undefined;
        s.setTimeout(10_000, () => s.destroy());
        s.on('data', (d) => (text += d.toString('latin1')));
        s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
        s.on('close', () => resolve({ text, ...(error ? { error } : {}) }));
        // Every request asks to close after its answer, so that each exchange ends when the server is done.
        s.write(bytes.replace('\r\n', '\r\nConnection: close\r\n'));
        const chunk = Buffer.alloc(32 * 1024, 0x7b);
        let sent = 0;
        const pump = () => {
          while (sent < uploadBytes && !s.destroyed) {
            sent += chunk.length;
            if (!s.write(chunk)) return void s.once('drain', pump);
          }
          if (!s.destroyed) s.end();
        };
        pump();
      });
    const auth = `Authorization: Bearer ${attacker.apiKey}\r\n`;
    const shapes: Array<() => [string, number]> = [
      () => [
        `GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(17_000 + Math.floor(random() * 30_000))}\r\n\r\n`,
        0,
      ],
      () => [
        `GET /v1/models HTTP/1.1\r\nHost: x\r\n${'X-H: v\r\n'.repeat(2_000 + Math.floor(random() * 2_000))}\r\n`,
        0,
      ],
      () => [`GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n`, 0],
      () => [`GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Ctl: a\u0001b\r\n\r\n`, 0],
      () => [`BREW /v1/models HTTP/1.1\r\nHost: x\r\n\r\n`, 0],
      () => [`GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n`, 0],
      () => [`GET /v1/jobs/%E0%A4%A HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, 0],
      () => [
        `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: abc\r\n\r\n`,
        0,
      ],
      () => {
        const size = LIMIT + 1 + Math.floor(random() * 4 * 1024 * 1024);
        return [
          `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`,
          size,
        ];
      },
      () => [
        `POST /admin/v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${LIMIT * 4}\r\n\r\n`,
        0,
      ],
    ];
    const jobsBefore = await count('select count(*)::text as n from jobs where namespace_id = $1', [
      attacker.namespaceId,
    ]);
    const failures: string[] = [];
    const runs = Array.from({ length: 60 }, (_, i) => shapes[i % shapes.length]!());
    await pool(runs, 4, async ([bytes, upload]) => {
      const r = await exchange(bytes, upload);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(r.text)?.[1] ?? 0);
      const body = r.text.split('\r\n\r\n').slice(1).join('\r\n\r\n');
      const what = `${bytes.slice(0, 60).replace(/\r\n/g, ' ')}… → ${r.text.slice(0, 120)} ${r.error ?? ''}`;
      if (status < 400 || status >= 500) failures.push(`status ${status}: ${what}`);
      else if (!/"error":\{"message":"[^"]+","type":"[a-z_]+","code":"[a-z_]+","param":/.test(body))
        failures.push(`not OpenAI-shaped: ${what}`);
      if (DRIVER_TEXT.test(body)) failures.push(`driver text: ${what}`);
      if (upload > 0 && r.error) failures.push(`the uploading client saw ${r.error}: ${what}`);
    });
    expect(failures).toEqual([]);
    expect(
      await count('select count(*)::text as n from jobs where namespace_id = $1', [attacker.namespaceId]),
    ).toBe(jobsBefore);
  }, 120_000);
});
