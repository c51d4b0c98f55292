// `npm run bench -- stream`: what the backbone adds to a streamed token. A backbone process of its own; the
// nodes (the simulator's agents, built-in runtime with a per-token delay) and the streaming clients run in
// this process, so the node's emit time and the client's receive time of each delta are read from one clock.
//   TTFT overhead: client's first content chunk − the node runtime emitting it (sequential streams, idle).
//   Inter-token overhead: the same per delta, every delta after the first, with STREAM_CONCURRENCY streams
//   in flight (closed loop).
// The raw floor is measured in the same run: a bare Node relay (e2e-stream-raw.ts, its own process) from a
// node WebSocket to an SSE response, driven the same way. Knobs: STREAM_NODES, STREAM_CONCURRENCY,
// STREAM_TOKENS, STREAM_TOKEN_DELAY_MS, STREAM_IDLE (sequential streams), STREAM_LOAD_S.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { BuiltinRuntime, type NodeRuntime, type RunOptions } from '../src/agent/node-runtime.js';
import { startSim } from '../src/cli/commands/sim.js';
import { spawnRty } from '../src/cli/rty-process.js';
import type { JobRequest } from '../src/modules/routing/index.js';
import { createTestStores } from '../test/backbone-harness.js';
import { backboneEnv, fundedApiKey, newAdminToken } from './backbone.js';
import { benchLine, round, summarize } from './stats.js';

const num = (name: string, d: number) => Number(process.env[name] ?? d);
const NODES = num('STREAM_NODES', 64);
const CONCURRENCY = num('STREAM_CONCURRENCY', 200);
const TOKENS = num('STREAM_TOKENS', 16);
const DELAY_MS = num('STREAM_TOKEN_DELAY_MS', 50);
const IDLE = num('STREAM_IDLE', 60);
const LOAD_S = num('STREAM_LOAD_S', 10);
const MODEL = 'bench-model';

/** Emit times of each delta by its text (every token of every stream is unique: `s<stream>t<token>`). */
const emitted = new Map<string, number>();
const received = new Map<string, number>();

/** The built-in runtime, noting when each delta leaves it for the agent's socket. */
class TimedRuntime implements NodeRuntime {
  readonly name = 'builtin-timed';
  private readonly inner = new BuiltinRuntime({ tokenDelayMs: DELAY_MS });
  run(model: string, request: JobRequest, opts: RunOptions = {}) {
    return this.inner.run(model, request, {
      ...opts,
      onDelta: (d) => {
        if (d.text) emitted.set(d.text.trim(), performance.now());
        opts.onDelta?.(d);
      },
    });
  }
}

/** The prompt of stream `s`: its tokens reversed (the built-in runtime answers them in reverse order). */
const tokensOf = (s: number) => Array.from({ length: TOKENS }, (_, t) => `s${s}t${t}`);

/** Reads an SSE body, noting the receive time of each content piece; resolves at its end. */
async function readSse(res: Response): Promise<void> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    const now = performance.now();
    buf += decoder.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = event.startsWith('data: ') ? event.slice(6) : '';
      if (!data || data === '[DONE]') continue;
      const chunk = JSON.parse(data) as { choices?: Array<{ delta?: { content?: string } }> };
      const text = chunk.choices?.[0]?.delta?.content?.trim();
      if (text) received.set(text, now);
    }
  }
}

/** Per-delta overhead (receive − emit) of streams `ids`: first deltas and the rest apart. */
function overheads(ids: number[]): { first: number[]; rest: number[]; missing: number } {
  const first: number[] = [];
  const rest: number[] = [];
  let missing = 0;
  for (const s of ids) {
    // The answer is the prompt reversed: its first delta is the prompt's last token.
    const answer = tokensOf(s).reverse();
    answer.forEach((tok, k) => {
      const e = emitted.get(tok);
      const r = received.get(tok);
      if (e === undefined || r === undefined) missing += 1;
      else (k === 0 ? first : rest).push(r - e);
    });
  }
  return { first, rest, missing };
}

/** Runs `one(streamId)` sequentially `IDLE` times, then closed-loop at CONCURRENCY for LOAD_S seconds. */
async function drive(one: (s: number) => Promise<void>, base: number) {
  const idleIds: number[] = [];
  for (let i = 0; i < IDLE; i += 1) {
    idleIds.push(base + i);
    await one(base + i);
  }
  const loadIds: number[] = [];
  let next = base + IDLE;
  const until = performance.now() + LOAD_S * 1000;
  let failed = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        const s = next++;
        loadIds.push(s);
        await one(s).catch(() => (failed += 1));
      }
    }),
  );
  return { idle: overheads(idleIds), load: overheads(loadIds), streams: loadIds.length, failed };
}

/** The raw relay: one node socket per simulated node, streams assigned round-robin. */
async function rawFloor() {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL('./e2e-stream-raw.ts', import.meta.url).pathname],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  try {
    let port = 0;
    for await (const l of createInterface({ input: child.stdout! })) {
      const m = /^RAW READY (\d+)/.exec(l);
      if (m) {
        port = Number(m[1]);
        break;
      }
    }
    const sockets = await Promise.all(
      Array.from(
        { length: NODES },
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(`ws://127.0.0.1:${port}/node`);
            ws.once('open', () => resolve(ws));
            ws.once('error', reject);
          }),
      ),
    );
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const one = async (s: number) => {
      const res = await fetch(`http://127.0.0.1:${port}/s/${s}`);
      const reading = readSse(res);
      const ws = sockets[s % sockets.length]!;
      for (const tok of tokensOf(s).reverse()) {
        await sleep(DELAY_MS);
        emitted.set(tok, performance.now());
        ws.send(JSON.stringify({ id: String(s), text: ` ${tok}` }));
      }
      ws.send(JSON.stringify({ id: String(s), end: true }));
      await reading;
    };
    const r = await drive(one, 1_000_000);
    sockets.forEach((ws) => ws.close());
    return r;
  } finally {
    child.kill('SIGTERM');
  }
}

export async function main(): Promise<void> {
  const stores = await createTestStores();
  const adminToken = newAdminToken();
  const config = stores.config();
  const backbone = spawnRty(
    ['serve', '--roles', 'cloud,io,gate,admin,status,workers', '--port', '0'],
    backboneEnv(config, { adminToken, nodes: NODES }),
  );
  let sim: Awaited<ReturnType<typeof startSim>> | undefined;
  try {
    const url = (await backbone.waitFor(/READY (http:\/\/\S+)/, 60_000))[1]!;
    sim = await startSim({
      url,
      nodes: NODES,
      models: [MODEL],
      environment: 'testnet',
      capacity: Math.ceil((CONCURRENCY * 1.25) / NODES),
      behaviour: { latencyMs: 0, jitterMs: 0, failureRate: 0, disconnectRate: 0, slowRate: 0 },
      runtime: new TimedRuntime(),
      adminToken,
      skipBind: false,
    });
    const { key } = await fundedApiKey(stores, config);
    const one = async (s: number) => {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({
          model: MODEL,
          messages: [{ role: 'user', content: tokensOf(s).join(' ') }],
          max_tokens: TOKENS,
          stream: true,
        }),
      });
      if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
      await readSse(res);
    };
    const bb = await drive(one, 0);
    const raw = await rawFloor();

    const show = (label: string, xs: number[]) => {
      const s = summarize(xs);
      console.log(
        `  ${label.padEnd(44)} p50 ${round(s.p50, 2)} ms  p99 ${round(s.p99, 2)} ms  (${xs.length})`,
      );
      return s;
    };
    console.log(
      `stream (${NODES} nodes, ${TOKENS} tokens per stream, ${DELAY_MS} ms per token; ${IDLE} sequential streams, then ${CONCURRENCY} concurrent for ${LOAD_S} s)`,
    );
    console.log('backbone (node runtime emits a delta → client reads its SSE chunk):');
    const ttft = show('first token, idle', bb.idle.first);
    show('later tokens, idle', bb.idle.rest);
    show(`first token, ${CONCURRENCY} streams`, bb.load.first);
    const inter = show(`later tokens, ${CONCURRENCY} streams`, bb.load.rest);
    console.log(
      `  ${bb.streams} streams under load, ${bb.failed} failed, ${bb.idle.missing + bb.load.missing} deltas unmatched`,
    );
    console.log('raw floor (bare Node relay: node WebSocket → SSE response, its own process):');
    const rawTtft = show('first token, idle', raw.idle.first);
    const rawInter = show(`later tokens, ${CONCURRENCY} streams`, raw.load.rest);
    console.log(`  ${raw.streams} streams under load, ${raw.failed} failed`);
    console.log(
      benchLine('stream', {
        ttft_overhead_p50_ms: round(ttft.p50, 2),
        ttft_overhead_p99_ms: round(ttft.p99, 2),
        intertoken_overhead_p99_ms: round(inter.p99, 2),
        streams: bb.streams,
        raw_ttft_p50_ms: round(rawTtft.p50, 2),
        raw_intertoken_p99_ms: round(rawInter.p99, 2),
        ratio: round(rawTtft.p50 / ttft.p50, 3),
      }),
    );
  } finally {
    await sim?.stop();
    await backbone.stop();
    await stores.drop();
  }
}
