// The HTTP edge on a whole backbone with the real stores: the input guard (depth, NUL, lone surrogates,
// percent-encoding), framework errors in the OpenAI shape (431, bad URL, malformed Authorization, 415, bad JSON),
// 405 with Allow, 413 before the body is read (and a clean close), store errors with clean messages, security
// headers, admin-only /metrics and /openapi.json, and CORS for the Cloud API when configured.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import { heartbeat, openSessions, randomAddress } from '../../test/live-harness.js';
import type { NodeExecutor } from '../modules/jobs/index.js';
import type { RunningServer } from '../app/serve.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const executor: NodeExecutor = {
  run: async () => ({ tokensIn: 3, tokensOut: 2, output: 'ok', finishReason: 'stop' }),
};

const LIMIT = 64 * 1024;
let stores: TestStores;
let server: RunningServer;
let admin: string;
let apiKey: string;
let nsId: string;
const port = () => Number(new URL(server.url).port);

async function call(
  method: string,
  url: string,
  opts: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; json: Json; headers: Record<string, unknown> }> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if ((opts.raw !== undefined || opts.body !== undefined) && !headers['content-type'])
    headers['content-type'] = 'application/json';
  const res = await server.app.inject({
    method: method as 'GET',
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
    // not JSON
  }
  return { status: res.statusCode, json, headers: res.headers };
}

/** An OpenAI-shaped error with this status and code, whose message names `mention`. */
function expectError(r: { status: number; json: Json }, status: number, code: string, mention?: RegExp) {
  expect(r.status, JSON.stringify(r.json)).toBe(status);
  expect(r.json.error).toMatchObject({ code, type: expect.any(String), message: expect.any(String) });
  expect('param' in r.json.error).toBe(true);
  if (mention) expect(r.json.error.message).toMatch(mention);
}

const count = async (table: string) =>
  Number((await stores.db.pool.query<{ n: string }>(`select count(*)::text as n from ${table}`)).rows[0]!.n);

/** Sends raw bytes on a fresh connection and collects what comes back until the server closes. */
function rawExchange(
  request: string,
  opts: { bodyBytes?: number } = {},
): Promise<{ text: string; writeError?: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(port(), '127.0.0.1');
    let text = '';
    let writeError: string | undefined;
    const timer = setTimeout(
      () => (s.destroy(), reject(new Error(`no close; got ${text.slice(0, 200)}`))),
      15_000,
    );
    s.on('data', (d) => (text += d.toString('latin1')));
    s.on('error', (e: NodeJS.ErrnoException) => (writeError = e.code ?? e.message));
    s.on('close', () => (clearTimeout(timer), resolve({ text, ...(writeError ? { writeError } : {}) })));
    s.write(request);
    if (opts.bodyBytes) {
      // Upload like a client that does not look at the answer until it has sent everything.
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let sent = 0;
      const pump = () => {
        while (sent < opts.bodyBytes! && !s.destroyed) {
          sent += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
      };
      pump();
    }
  });
}

beforeAll(async () => {
  stores = await createTestStores();
  admin = stores.config().ADMIN_TOKEN;
  server = await startTestServer(stores, {
    roles: 'cloud,io,gate,admin,status,workers',
    executor,
    overrides: { HTTP_BODY_LIMIT_BYTES: LIMIT, PRICE_PER_TOKEN_MICRO: 1 },
  });
  const b = server.backbone;
  const operator = await b.accounts.createAccount({ email: 'operator@hardening.example' });
  const address = randomAddress();
  await b.nodes.admin.registerNode({ address, environment: 'testnet', accountId: operator.id });
  await openSessions(b.nodes, [{ address, environment: 'testnet' }]);
  await b.nodes.presence.ingest(
    heartbeat(address, {
      environment: 'testnet',
      models: [{ name: 'llama3-8b', version: 'v1', active: true }],
      capacity: 8,
    }),
  );
  const account = await b.accounts.createAccount({ email: 'tenant@hardening.example' });
  const ns = await b.accounts.createNamespace({ accountId: account.id, name: 'hard' });
  nsId = ns.id;
  await b.ledger.topUp(ns.id, 1_000_000_000n, 'seed');
  apiKey = (await b.accounts.createApiKey({ namespaceId: ns.id, name: 'k' })).plaintext;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

describe('input guard', () => {
  it('refuses 5,000-deep JSON with a 400 naming the limit, before any hold or job row is written', async () => {
    const [jobs, holds] = [await count('jobs'), await count('credit_holds')];
    const raw = `{"model":"llama3-8b","messages":[{"role":"user","content":"hi"}],"tools":${nested(5000)}}`;
    const r = await call('POST', '/v1/chat/completions', { token: apiKey, raw });
    expectError(r, 400, 'invalid_request', /HTTP_JSON_MAX_DEPTH/);
    expect(r.json.error.param).toMatch(/^body\.tools/);
    // A normal request still goes through (the node answers) and the refused one left nothing.
    const ok = await call('POST', '/v1/chat/completions', {
      token: apiKey,
      body: { model: 'llama3-8b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 },
    });
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    expect([await count('jobs'), await count('credit_holds')]).toEqual([jobs + 1, holds + 1]);
  });

  it('refuses NUL and lone surrogates in query, params and bodies, naming the field', async () => {
    expectError(
      await call('GET', `/admin/v1/namespaces/${nsId}/jobs?model=%00`, { token: admin }),
      400,
      'invalid_request',
      /query\.model.*NUL/,
    );
    const versions = await count('network_config_versions');
    const key = await call('POST', '/admin/v1/network/config', {
      token: admin,
      raw: '{"body":{"a\\u0000b":1}}',
    });
    expectError(key, 400, 'invalid_request', /NUL/);
    expect(key.json.error.param).toBe('body.body');
    const value = await call('POST', '/admin/v1/network/config', {
      token: admin,
      raw: '{"body":{"k":"x\\u0000"}}',
    });
    expectError(value, 400, 'invalid_request', /body\.body\.k/);
    expect(await count('network_config_versions')).toBe(versions);
    const jobs = await count('jobs');
    const surrogate = await call('POST', '/v1/completions', {
      token: apiKey,
      raw: '{"model":"llama3-8b","prompt":"a\\ud800b"}',
    });
    expectError(surrogate, 400, 'invalid_request', /body\.prompt.*surrogate/);
    expectError(
      await call('POST', '/v1/chat/completions', {
        token: apiKey,
        raw: '{"model":"llama3-8b","messages":[{"role":"user","content":"x\\u0000y"}]}',
      }),
      400,
      'invalid_request',
      /body\.messages\.0\.content/,
    );
    expectError(await call('GET', '/v1/jobs/%00', { token: apiKey }), 400, 'invalid_request', /params\.id/);
    expect(await count('jobs')).toBe(jobs);
  });

  it('refuses malformed percent-encoding in the path and the query', async () => {
    expectError(
      await call('GET', '/v1/jobs/%zz', { token: apiKey }),
      400,
      'invalid_request',
      /percent-encoded/,
    );
    expectError(
      await call('GET', `/admin/v1/namespaces/${nsId}/jobs?model=%E0%A4`, { token: admin }),
      400,
      'invalid_request',
      /query parameter "model"/,
    );
  });
});

describe('framework errors in the OpenAI shape', () => {
  it('malformed Authorization, unsupported media type and bad JSON', async () => {
    for (const authorization of ['Basic dXNlcjpwYXNz', 'Bearer a b', 'Bearer'])
      expectError(
        await call('GET', '/v1/models', { headers: { authorization } }),
        401,
        'unauthorized',
        /malformed Authorization/,
      );
    expectError(
      await call('POST', '/admin/v1/accounts', {
        token: admin,
        raw: 'email=x',
        headers: { 'content-type': 'text/plain' },
      }),
      415,
      'unsupported_media_type',
      /application\/json/,
    );
    expectError(
      await call('POST', '/admin/v1/accounts', { token: admin, raw: '{"email":' }),
      400,
      'invalid_request',
      /JSON/,
    );
  });

  it('405 with Allow for a known path with the wrong method; 404 for an unknown path', async () => {
    const r = await call('GET', '/v1/chat/completions', { token: apiKey });
    expectError(r, 405, 'method_not_allowed');
    expect(r.headers.allow).toBe('POST');
    const del = await call('DELETE', `/admin/v1/namespaces/${nsId}/topups`, { token: admin });
    expectError(del, 405, 'method_not_allowed');
    expect(del.headers.allow).toBe('POST');
    expect(
      (await call('PUT', '/v1/jobs/00000000-0000-4000-8000-000000000000', { token: apiKey })).headers.allow,
    ).toBe('GET, HEAD');
    expectError(await call('GET', '/v1/nothing-here', { token: apiKey }), 404, 'not_found');
  });

  it('431 for oversized headers and 400 for a header HTTP does not allow, as JSON bodies', async () => {
    const big = await rawExchange(
      `GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(big.text).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(big.text.split('\r\n\r\n')[1]!).error.code).toBe('headers_too_large');
    const bad = await rawExchange(`GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n`);
    expect(bad.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(bad.text.split('\r\n\r\n')[1]!).error.code).toBe('invalid_request');
  });

  it('413 from Content-Length before the body is read; the uploading client reads it (no reset)', async () => {
    const size = 16 * 1024 * 1024;
    const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`;
    const r = await rawExchange(head, { bodyBytes: size });
    expect(r.text).toMatch(/^HTTP\/1\.1 413 /);
    const body = JSON.parse(r.text.split('\r\n\r\n')[1]!);
    expect(body.error.code).toBe('payload_too_large');
    expect(body.error.message).toContain(`${LIMIT} bytes`);
    expect(r.writeError).toBeUndefined();
    // With Expect: 100-continue the body is never asked for.
    const cont = await rawExchange(head.replace('\r\n\r\n', '\r\nExpect: 100-continue\r\n\r\n'));
    expect(cont.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(cont.text).not.toMatch(/100 Continue/);
  });
});

describe('store errors and security headers', () => {
  it('a duplicate account email is a 409 naming the field, without the database text', async () => {
    const email = 'dup@hardening.example';
    expect((await call('POST', '/admin/v1/accounts', { token: admin, body: { email } })).status).toBe(201);
    const r = await call('POST', '/admin/v1/accounts', { token: admin, body: { email } });
    expectError(r, 409, 'already_exists', /email/);
    expect(r.json.error.param).toBe('email');
    expect(r.json.error.message).not.toMatch(/duplicate key|violates|constraint|accounts_email_key/);
  });

  it('a reused top-up key with another amount is a 409 without internal key names', async () => {
    const url = `/admin/v1/namespaces/${nsId}/topups`;
    expect(
      (await call('POST', url, { token: admin, body: { amountMicro: '5', idempotencyKey: 'k-1' } })).status,
    ).toBe(201);
    const r = await call('POST', url, { token: admin, body: { amountMicro: '6', idempotencyKey: 'k-1' } });
    expectError(r, 409, 'idempotency_conflict', /idempotencyKey/);
    expect(r.json.error.message).not.toContain(nsId);
  });

  it('an Idempotency-Key reused for a request of another cost is a 409 without internal key names', async () => {
    const headers = { 'idempotency-key': `idem-${Date.now()}`, 'x-rty-mode': 'polling' };
    const body = (max: number) => ({
      model: 'llama3-8b',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: max,
    });
    expect(
      (await call('POST', '/v1/chat/completions', { token: apiKey, headers, body: body(4) })).status,
    ).toBe(202);
    const r = await call('POST', '/v1/chat/completions', { token: apiKey, headers, body: body(400) });
    expectError(r, 409, 'idempotency_conflict', /Idempotency-Key/);
    expect(r.json.error.message).not.toMatch(/reserve:|[0-9a-f]{8}-[0-9a-f]{4}-/);
  });

  it('answers carry nosniff and no-store (Status keeps its public cache); ops endpoints need the admin token', async () => {
    const created = await call('POST', `/admin/v1/namespaces/${nsId}/keys`, {
      token: admin,
      body: { name: 'n' },
    });
    expect(created.status).toBe(201);
    expect(created.headers['cache-control']).toBe('no-store');
    expect(created.headers['x-content-type-options']).toBe('nosniff');
    const err = await call('GET', '/v1/models');
    expect([err.headers['cache-control'], err.headers['x-content-type-options']]).toEqual([
      'no-store',
      'nosniff',
    ]);
    expect((await call('GET', '/status/v1')).headers['cache-control']).toMatch(/^public/);
    for (const url of ['/metrics', '/openapi.json']) {
      expectError(await call('GET', url), 401, 'unauthorized');
      expect((await call('GET', url, { token: admin })).status).toBe(200);
    }
  });
});

describe('configured surfaces', () => {
  it('CORS is off by default and an allow-list when set; public ops endpoints when configured', async () => {
    const pre = { origin: 'https://app.example', 'access-control-request-method': 'POST' };
    const off = await call('OPTIONS', '/v1/chat/completions', { headers: pre });
    expect(off.headers['access-control-allow-origin']).toBeUndefined();
    const other = await startTestServer(stores, {
      roles: 'cloud',
      overrides: { CLOUD_CORS_ORIGINS: ['https://app.example'], HTTP_OPS_ENDPOINTS: 'public' },
    });
    try {
      const ok = await other.app.inject({ method: 'OPTIONS', url: '/v1/chat/completions', headers: pre });
      expect(ok.statusCode).toBe(204);
      expect(ok.headers['access-control-allow-origin']).toBe('https://app.example');
      // The preflight of the official OpenAI JS SDK in a browser: every header it asks for is allowed.
      const sdkHeaders = [
        'authorization',
        'content-type',
        'x-stainless-os',
        'x-stainless-arch',
        'x-stainless-lang',
        'x-stainless-runtime',
        'x-stainless-runtime-version',
        'x-stainless-package-version',
        'x-stainless-retry-count',
        'x-stainless-timeout',
        'openai-organization',
        'openai-project',
        'idempotency-key',
        'x-rty-mode',
        'x-rty-priority',
      ];
      const sdk = await other.app.inject({
        method: 'OPTIONS',
        url: '/v1/chat/completions',
        headers: { ...pre, 'access-control-request-headers': sdkHeaders.join(',') },
      });
      expect(sdk.statusCode).toBe(204);
      expect(sdk.headers['access-control-allow-origin']).toBe('https://app.example');
      const allowedHeaders = String(sdk.headers['access-control-allow-headers'])
        .toLowerCase()
        .split(/\s*,\s*/);
      for (const h of sdkHeaders) expect(allowedHeaders).toContain(h);
      const evil = await other.app.inject({
        method: 'OPTIONS',
        url: '/v1/chat/completions',
        headers: { ...pre, origin: 'https://evil.example' },
      });
      expect(evil.headers['access-control-allow-origin']).toBeUndefined();
      const get = await other.app.inject({
        url: '/v1/models',
        headers: { origin: 'https://app.example', authorization: `Bearer ${apiKey}` },
      });
      expect(get.statusCode).toBe(200);
      expect(get.headers['access-control-allow-origin']).toBe('https://app.example');
      expect((await other.app.inject({ url: '/metrics' })).statusCode).toBe(200);
    } finally {
      await other.stop();
    }
  });

  it('Redis unreachable is a 503 with Retry-After and a clean message, never a 500', async () => {
    const other = await startTestServer(stores, { roles: 'cloud' });
    try {
      other.backbone.redis.disconnect();
      const r = await other.app.inject({ url: '/v1/models', headers: { authorization: `Bearer ${apiKey}` } });
      expect(r.statusCode, r.body).toBe(503);
      expect(r.headers['retry-after']).toBe('1');
      expect(r.json().error.code).toBe('store_unavailable');
      expect(r.json().error.message).toMatch(/unavailable/);
      expect(r.json().error.message).not.toMatch(/127\.0\.0\.1|Connection is closed/);
    } finally {
      await other.stop();
    }
  });
});
