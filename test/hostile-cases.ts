// Generator of hostile HTTP requests for the hostile-input suite: a valid request per route, then one mutation
// of its body, keys, query, path parameters, headers or method, drawn from a seeded generator (replayable).

export interface RouteSpec {
  method: string;
  /** Fastify pattern, e.g. `/v1/jobs/:id`. */
  path: string;
  auth: Record<string, string>;
  params: Record<string, string>;
  /** Raw query string of the valid request (without `?`). */
  query: string;
  body: unknown;
}

export interface Case {
  label: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string;
  /** A Cloud submission: an accepted one creates exactly one job row and one hold. */
  submitsJob: boolean;
}

/** mulberry32: small, fast, seeded. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(random: () => number, xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

const MODEL = 'llama3-8b';
const chat = { model: MODEL, messages: [{ role: 'user', content: 'hello' }], max_tokens: 8 };

/** A valid body per `METHOD /pattern` (signed node messages are made by the suite). */
export const baseBodies: Record<string, unknown> = {
  'POST /v1/chat/completions': chat,
  'POST /v1/completions': { model: MODEL, prompt: 'hello', max_tokens: 8 },
  'POST /v1/embeddings': { model: MODEL, input: ['hello', 'world'] },
  'POST /gate/v1/namespaces': { name: 'hostile-ns' },
  'POST /gate/v1/namespaces/:id/keys': { name: 'hostile key', rateLimitPerS: 10 },
  'POST /admin/v1/accounts': { email: 'hostile@hostile.example' },
  'POST /admin/v1/accounts/:id/namespaces': { name: 'hostile-admin-ns' },
  'POST /admin/v1/namespaces/:id/topups': { amountMicro: '1', idempotencyKey: 'hostile-topup-1' },
  'POST /admin/v1/namespaces/:id/keys': { name: 'hostile admin key' },
  'POST /admin/v1/nodes/:address/flags': { flag: 'pause', reason: 'hostile test', expiresInMs: 60_000 },
  'POST /admin/v1/subclouds': { name: 'hostile-sc', environment: 'testnet' },
  'POST /admin/v1/subclouds/:id/members': { address: `0x${'ab'.repeat(20)}` },
  'POST /admin/v1/network/config': { body: { hostile: { limit: 1 } } },
  'POST /admin/v1/quarantine/replay': { jobIds: ['00000000-0000-4000-8000-000000000002'] },
  'POST /admin/v1/quarantine/purge': { jobIds: ['00000000-0000-4000-8000-000000000003'] },
};

/** A JSON fragment spliced in as is (numbers JSON.stringify cannot write, nesting beyond any limit). */
class Raw {
  constructor(readonly text: string) {}
}
const nest = (depth: number, open = '[', close = ']') => open.repeat(depth) + close.repeat(depth);
const deepObject = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

/** Valid JSON that FerretDB cannot store as is (nested arrays, empty field names): the records module
 * encodes them, so Cloud submissions carry them too and their job documents must still appear. */
const nestedPair = [[1, 2]];
const nestedEmpty = [[[]]];

const hostileValues: unknown[] = [
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  '\udc00\ud800',
  '',
  ' ',
  '\u202eevil',
  '💥'.repeat(200),
  'x'.repeat(8000),
  '%00',
  "'; drop table jobs; --",
  '{"$gt":""}',
  '../../etc/passwd',
  '<script>alert(1)</script>',
  0,
  -1,
  1.5,
  1e21,
  -1e-300,
  true,
  false,
  null,
  [],
  {},
  nestedPair,
  nestedEmpty,
  { $gt: '' },
  { 'a.b': 1 },
  { $where: 'sleep(1000)' },
  [null],
  new Array(400).fill('a'),
  new Raw('1e999'),
  new Raw('-1e999'),
  new Raw('9007199254740993'),
  new Raw('-0'),
  new Raw('123456789012345678901234567890'),
  new Raw(nest(70)),
  new Raw(deepObject(200)),
  new Raw(nest(5000)),
  new Raw(deepObject(6000)),
];

const hostileKeys = [
  '__proto__',
  'constructor',
  'prototype',
  '$set',
  'a.b',
  '',
  'k\u0000',
  '\ud800',
  '   ',
  'x'.repeat(300),
  'toString',
];

const hostileQueries = [
  'model=%00',
  'model=a%00b',
  'model=%zz',
  'model=%E0%A4',
  'model=%ED%A0%80',
  'model=%C0%80',
  'limit=-1',
  'limit=1e99',
  'limit=abc',
  'limit=1&limit=2',
  'status[$ne]=x',
  `cursor=${'A'.repeat(600)}`,
  'cursor=eyJhIjoxfQ',
  'from=2020-13-45T00:00:00Z',
  'to=%00',
  'format=xml',
  'encoding_format=%00',
  'apiKeyId=not-a-uuid',
  `x=${'%41'.repeat(3000)}`,
  'a[b][c]=1',
  '__proto__=1',
  'constructor[prototype]=1',
  '%00=1',
  '=',
  '&&&',
  '%',
];

const hostileSegments = [
  '%00',
  'a%00b',
  '%zz',
  '%E0%A4%A',
  '%ED%A0%80',
  'not-a-uuid',
  '..%2F..%2Fetc',
  'x'.repeat(150),
  '00000000-0000-4000-8000-00000000000G',
  'AAAAAAAA-AAAA-4AAA-8AAA-AAAAAAAAAAAA',
  `0X${'A'.repeat(40)}`,
  '%20',
  '-1',
  '1e9',
  ';',
  '%2e%2e',
  '%F0%9F%92%A5',
];

const hostileAuth = [
  undefined,
  '',
  'Bearer',
  'Bearer ',
  'Basic dXNlcjpwYXNz',
  'Bearer a b',
  `Bearer ${'x'.repeat(600)}`,
  'Bearer sk-not-a-real-key',
  'Bearer rtya_not_a_real_token',
  'Token abc',
  'Bearer \u00ff\u00fe',
];

const hostileContentTypes = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'application/jsonx',
  'application/*',
  'application/xml',
  'application/json, text/plain',
];

const hostileHeaders: Array<Record<string, string>> = [
  { 'idempotency-key': 'k'.repeat(300) },
  { 'idempotency-key': '\u00e9t\u00e9' },
  { 'x-rty-mode': 'bogus' },
  { 'x-rty-mode': 'polling' },
  { 'x-rty-environment': 'prod' },
  { 'x-rty-environment': 'mainnet' },
  { 'x-rty-priority': 'x' },
  { 'x-rty-priority': 'bulk' },
  { 'content-encoding': 'gzip' },
  { 'transfer-encoding': 'chunked' },
];

const otherMethods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const submitPaths = new Set(['/v1/chat/completions', '/v1/completions', '/v1/embeddings']);

/** Serialises a value with Raw fragments spliced in. */
function serialise(value: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (v instanceof Raw) {
      raws.push(v.text);
      return `\u0001RAW${raws.length - 1}\u0001`;
    }
    return v;
  });
  return text.replace(/"\\u0001RAW(\d+)\\u0001"/g, (_m, i: string) => raws[Number(i)]!);
}

interface Slot {
  container: Record<string, unknown> | unknown[];
  key: string | number;
}

/** Every place in a JSON value where a value can be put (object fields, array items). */
function slotsOf(value: unknown): Slot[] {
  const out: Slot[] = [];
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (Array.isArray(v))
      v.forEach((x, i) => {
        out.push({ container: v, key: i });
        stack.push(x);
      });
    else if (v && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) {
        out.push({ container: v as Record<string, unknown>, key: k });
        stack.push(x);
      }
  }
  return out;
}

function containersOf(value: unknown): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (Array.isArray(v)) stack.push(...v);
    else if (v && typeof v === 'object') {
      out.push(v as Record<string, unknown>);
      stack.push(...Object.values(v));
    }
  }
  return out;
}

const clone = (v: unknown): unknown => (v === undefined ? undefined : structuredClone(v));

export function mutate(spec: RouteSpec, random: () => number, limitBytes: number): Case {
  let method = spec.method;
  const params = { ...spec.params };
  let query = spec.query;
  const headers: Record<string, string> = { ...spec.auth };
  let body = clone(spec.body);
  let payload: string | undefined;
  let contentType: string | undefined = body !== undefined ? 'application/json' : undefined;
  const hasBody = body !== undefined;

  const classes = [
    'valid',
    'body-value',
    'body-value',
    'body-value',
    'body-key',
    'body-drop',
    'body-whole',
    'body-extra',
    'body-big',
    'query',
    'query',
    'param',
    'param',
    'auth',
    'content-type',
    'header',
    'method',
  ] as const;
  const values = hostileValues;
  const keys = hostileKeys;
  const cls = pick(random, classes);
  let label: string = cls;
  switch (cls) {
    case 'valid':
      break;
    case 'body-value': {
      const slots = slotsOf(body);
      const v = pick(random, values);
      if (slots.length === 0 || body === undefined) body = { value: v };
      else {
        const s = pick(random, slots);
        (s.container as Record<string | number, unknown>)[s.key] = v;
        label = `body-value@${String(s.key)}`;
      }
      break;
    }
    case 'body-key':
    case 'body-extra': {
      const targets = containersOf(body);
      const target =
        targets.length > 0 && body !== undefined
          ? pick(random, targets)
          : ((body = {}) as Record<string, unknown>);
      const key = cls === 'body-key' ? pick(random, keys) : `extra_${Math.floor(random() * 1000)}`;
      // A computed key makes __proto__ an own property, so JSON.stringify writes it like an attacker would.
      Object.defineProperty(target, key, {
        value: pick(random, values),
        enumerable: true,
        configurable: true,
        writable: true,
      });
      label = `${cls}:${JSON.stringify(key).slice(0, 20)}`;
      break;
    }
    case 'body-drop': {
      const targets = containersOf(body);
      if (targets.length > 0) {
        const t = pick(random, targets);
        const keys = Object.keys(t);
        if (keys.length > 0) delete t[pick(random, keys)];
      }
      break;
    }
    case 'body-whole': {
      payload = pick(random, [
        'null',
        '1',
        '"text"',
        '[]',
        '[{}]',
        'not json',
        '{',
        '{"a":1,}',
        "{'a':1}",
        '\ufeff{}',
        '',
        '{"__proto__":{"admin":true}}',
        '{"constructor":{"prototype":{"x":1}}}',
        nest(5000),
        deepObject(5000),
        `{"model":"${MODEL}","messages":${nest(20_000)}}`,
        '{"a":"\\u0000"}',
        '{"a":"\\ud800"}',
        '{"a\\u0000":1}',
        '{"a":"\\x00"}',
        `{"a":"${'\\u0000'.repeat(100)}"}`,
      ]);
      if (contentType === undefined) contentType = 'application/json';
      label = `body-whole:${payload.slice(0, 16)}`;
      break;
    }
    case 'body-big': {
      const size = limitBytes + 1 + Math.floor(random() * limitBytes);
      payload = JSON.stringify({ model: MODEL, pad: 'x'.repeat(size) });
      contentType = 'application/json';
      break;
    }
    case 'query': {
      const q = pick(random, hostileQueries);
      query = query ? `${query}&${q}` : q;
      label = `query:${q.slice(0, 24)}`;
      break;
    }
    case 'param': {
      const names = Object.keys(params);
      const seg = pick(random, hostileSegments);
      if (names.length > 0) params[pick(random, names)] = seg;
      else query = `id=${seg}`;
      label = `param:${seg.slice(0, 16)}`;
      break;
    }
    case 'auth': {
      const a = pick(random, hostileAuth);
      delete headers.authorization;
      if (a !== undefined) headers.authorization = a;
      label = `auth:${String(a).slice(0, 16)}`;
      break;
    }
    case 'content-type': {
      contentType = pick(random, hostileContentTypes);
      payload = hasBody ? serialise(body) : 'a=1';
      label = `content-type:${contentType}`;
      break;
    }
    case 'header': {
      Object.assign(headers, pick(random, hostileHeaders));
      label = `header:${Object.keys(headers).join(',')}`;
      break;
    }
    case 'method': {
      method = pick(
        random,
        otherMethods.filter((m) => m !== spec.method),
      );
      label = `method:${method}`;
      break;
    }
  }
  if (payload === undefined && body !== undefined && method !== 'GET' && method !== 'OPTIONS')
    payload = serialise(body);
  if (payload !== undefined && contentType !== undefined) headers['content-type'] = contentType;
  if (headers['transfer-encoding'] && payload === undefined) delete headers['transfer-encoding'];
  // Path parameters: valid ones are encoded, hostile ones are sent as the attacker wrote them.
  const path = spec.path.replace(/:(\w+)/g, (_m, name: string) => {
    const v = params[name] ?? '';
    return v === spec.params[name] ? encodeURIComponent(v) : v;
  });
  return {
    label: `${spec.method} ${spec.path} ${label}`,
    method,
    url: query ? `${path}?${query}` : path,
    headers,
    ...(payload !== undefined && method !== 'GET' && method !== 'HEAD' ? { payload } : {}),
    submitsJob: method === 'POST' && submitPaths.has(spec.path),
  };
}
