// The e2e benchmark's load generator, a process of its own: sync chat requests over a keep-alive http.Agent
// (not fetch). `closed` warms up, prints WARM <jobs>, waits for "go" on stdin, runs the measured window, prints
// DONE <json> and exits at the next stdin line; `open` sends at a fixed rate; `seq` sends requests one after another. Argument: JSON options.
import http from 'node:http';
import { createInterface } from 'node:readline';
import { summarize } from './stats.js';

interface Opts {
  mode: 'closed' | 'open' | 'seq';
  url: string;
  key: string;
  model: string;
  concurrency?: number;
  warmupS?: number;
  seconds?: number;
  rate?: number;
  count?: number;
}

const o = JSON.parse(process.argv[2] ?? '{}') as Opts;
const target = new URL('/v1/chat/completions', o.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(1, o.concurrency ?? 256) });
let seq = 0;

function chat(): Promise<number> {
  const body = JSON.stringify({
    model: o.model,
    messages: [{ role: 'user', content: `job ${seq++} say hello` }],
    max_tokens: 16,
  });
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      target,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          authorization: `Bearer ${o.key}`,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode === 200) resolve(performance.now() - t0);
          else reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 300)}`));
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

let failures = 0;
const fail = (err: unknown) => {
  failures += 1;
  if (failures <= 3) process.stderr.write(`request failed: ${(err as Error).message}\n`);
};

async function closedLoop(seconds: number): Promise<{ done: number; seconds: number }> {
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: o.concurrency ?? 64 }, async () => {
      while (performance.now() < until) {
        try {
          await chat();
          done += 1;
        } catch (err) {
          fail(err);
        }
      }
    }),
  );
  return { done, seconds: (performance.now() - t0) / 1000 };
}

const line = (s: string) => process.stdout.write(`${s}\n`);

if (o.mode === 'closed') {
  const warm = await closedLoop(o.warmupS ?? 3);
  line(`WARM ${warm.done}`);
  const rl = createInterface({ input: process.stdin });
  const next = () => new Promise<void>((resolve) => rl.once('line', () => resolve()));
  await next();
  failures = 0;
  const r = await closedLoop(o.seconds ?? 15);
  line(`DONE ${JSON.stringify({ ...r, failed: failures, rate: r.done / r.seconds })}`);
  await next(); // stay alive until our CPU time has been read
  rl.close();
} else if (o.mode === 'open') {
  const rate = o.rate ?? 10;
  const total = Math.max(1, Math.round(rate * (o.seconds ?? 5)));
  const latencies: number[] = [];
  const inflight: Array<Promise<void>> = [];
  const t0 = performance.now();
  for (let i = 0; i < total; i += 1) {
    const wait = t0 + (i * 1000) / rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inflight.push(chat().then((ms) => void latencies.push(ms), fail));
  }
  await Promise.all(inflight);
  line(`DONE ${JSON.stringify({ ...summarize(latencies), failed: failures, done: latencies.length })}`);
} else {
  const latencies: number[] = [];
  for (let i = 0; i < (o.count ?? 300); i += 1) await chat().then((ms) => void latencies.push(ms), fail);
  line(`DONE ${JSON.stringify({ ...summarize(latencies), failed: failures, done: latencies.length })}`);
}
agent.destroy();
process.exit(0);
