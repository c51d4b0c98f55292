// `npm run bench -- e2e`: jobs through the whole durable path — HTTP API → ledger reserve → RabbitMQ →
// dispatch (select-and-lease in Redis) → simulated node over a signed WebSocket → settle → records — with the
// backbone and the node simulator as separate processes and this process as the load generator. Beside it,
// in the same run: the raw persistent RabbitMQ ceiling (amqplib, same queue type) and pg-boss 10 fetch+complete
// on the same PostgreSQL. Then open-loop latency at 50% and 90% of the sustained rate, dispatch p99 (enqueued →
// frame sent to the node, from the backbone's histogram) and the backbone's RSS with 5,000 connected nodes.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import PgBoss from 'pg-boss';
import { createTestStores, type TestStores } from '../test/backbone-harness.js';
import { uniqueName } from '../test/harness.js';
import { AccountsService } from '../src/modules/accounts/index.js';
import { LedgerService } from '../src/modules/credits/index.js';
import { createLogger } from '../src/platform/logger.js';
import { routingOptionsFromConfig } from '../src/modules/routing/index.js';
import { spawnRty as rty, type RtyProcess as Proc } from '../src/cli/rty-process.js';
import { runRaw } from './routing.js';
import { benchLine, round, summarize } from './stats.js';

const MODEL = 'bench-model';
const NODES = Number(process.env.E2E_NODES ?? 40);
const RSS_NODES = Number(process.env.E2E_RSS_NODES ?? 5000);
const CONCURRENCY = Number(process.env.E2E_CONCURRENCY ?? 192);
const SUSTAIN_S = Number(process.env.E2E_SUSTAIN_S ?? 15);
const OPEN_LOOP_S = Number(process.env.E2E_OPEN_LOOP_S ?? 10);
const PGBOSS_JOBS = 20_000;
const ADMIN_TOKEN = `bench-admin-${randomBytes(8).toString('hex')}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function pgBossRate(stores: TestStores): Promise<number> {
  const schema = uniqueName('pgboss');
  const boss = new PgBoss({ connectionString: stores.config().POSTGRES_URL, schema, max: 8 });
  boss.on('error', () => undefined);
  await boss.start();
  try {
    const queue = 'bench';
    await boss.createQueue(queue);
    for (let i = 0; i < PGBOSS_JOBS; i += 1000)
      await boss.insert(Array.from({ length: 1000 }, (_, j) => ({ name: queue, data: { i: i + j } })));
    const t0 = performance.now();
    let done = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (;;) {
          const jobs = await boss.fetch(queue, { batchSize: 100 });
          if (jobs.length === 0) return;
          await boss.complete(
            queue,
            jobs.map((j) => j.id),
          );
          done += jobs.length;
        }
      }),
    );
    if (done !== PGBOSS_JOBS) throw new Error(`pg-boss completed ${done} of ${PGBOSS_JOBS}`);
    return done / ((performance.now() - t0) / 1000);
  } finally {
    await boss.stop({ graceful: false, wait: true }).catch(() => undefined);
    const { Client } = (await import('pg')).default;
    const c = new Client({ connectionString: stores.config().POSTGRES_URL });
    await c.connect();
    await c.query(`drop schema if exists ${schema} cascade`);
    await c.end();
  }
}

/** Histogram quantile over the delta of two Prometheus scrapes (bucket upper bound, in ms). */
function histogramQuantileMs(before: string, after: string, name: string, q: number): number {
  const parse = (text: string) => {
    const buckets = new Map<number, number>();
    for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)`, 'gm')))
      buckets.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
    return buckets;
  };
  const a = parse(before);
  const b = parse(after);
  const les = [...b.keys()].sort((x, y) => x - y);
  const total = (b.get(Infinity) ?? 0) - (a.get(Infinity) ?? 0);
  if (total <= 0) return NaN;
  for (const le of les) if ((b.get(le) ?? 0) - (a.get(le) ?? 0) >= q * total) return le * 1000;
  return Infinity;
}

async function chat(url: string, key: string, i: number): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: `job ${i} say hello` }],
      max_tokens: 16,
    }),
  });
  const body = await r.text();
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${body.slice(0, 300)}`);
  return performance.now() - t0;
}

export async function main(): Promise<void> {
  const stores = await createTestStores();
  const procs: Proc[] = [];
  const log = createLogger('silent');
  try {
    const config = stores.config();
    // 1. Raw ceilings of the same run.
    const routingOpts = routingOptionsFromConfig(config);
    const rawRabbit = await runRaw(stores.vhost.url, routingOpts.topology, Buffer.alloc(1024, 7));
    console.log(
      `raw RabbitMQ (amqplib, persistent, confirmed, classic, 1 KiB): ${round(rawRabbit, 0)} msg/s`,
    );
    const pgboss = await pgBossRate(stores);
    console.log(`pg-boss 10.4 fetch(100)+complete, 4 workers: ${round(pgboss, 0)} jobs/s`);

    // 2. Backbone + simulator as separate processes on the run's own stores.
    const env: Record<string, string> = {
      POSTGRES_SCHEMA: config.POSTGRES_SCHEMA,
      REDIS_KEY_PREFIX: config.REDIS_KEY_PREFIX,
      AMQP_URL: config.AMQP_URL,
      MONGO_DB: config.MONGO_DB,
      ADMIN_TOKEN,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_KEY_PER_S: '1000000',
      RATE_LIMIT_KEY_BURST: '1000000',
      RATE_LIMIT_NAMESPACE_PER_S: '1000000',
      RATE_LIMIT_NAMESPACE_BURST: '1000000',
      ROUTING_CONSUMER_CONCURRENCY: '256',
      ROUTING_LANE_PREFETCH: '256',
      POSTGRES_POOL_SIZE: '16',
      HEARTBEAT_INTERVAL_MS: '10000',
    };
    const backbone = rty(['serve', '--roles', 'cloud,io,gate,admin,status,workers', '--port', '0'], env);
    procs.push(backbone);
    const url = (await backbone.waitFor(/READY (http:\/\/\S+)/, 60_000))[1]!;
    const sim = rty(
      [
        'sim',
        '--url',
        url,
        '--nodes',
        String(NODES),
        '--models',
        MODEL,
        '--latency-ms',
        '0',
        '--admin-token',
        ADMIN_TOKEN,
      ],
      { ...env, LOG_LEVEL: 'warn' },
    );
    procs.push(sim);
    await sim.waitFor(/SIM READY/, 120_000);

    const accounts = new AccountsService({ pool: stores.db.pool, apiKeyPepper: config.API_KEY_PEPPER });
    const ledger = new LedgerService({
      pool: stores.db.pool,
      log,
      options: { batchMaxWaitMs: 2, batchMaxSize: 100, batchConcurrency: 1, holdTimeoutMs: 600_000 },
    });
    const account = await accounts.createAccount({ email: 'bench@example.test' });
    const ns = await accounts.createNamespace({ accountId: account.id, name: 'bench' });
    await ledger.topUp(ns.id, 1_000_000_000_000n, 'bench-topup');
    await ledger.stop();
    const key = (await accounts.createApiKey({ namespaceId: ns.id, name: 'bench' })).plaintext;

    // 3. Sustained closed-loop throughput (warm-up first).
    let seq = 0;
    const closedLoop = async (seconds: number) => {
      const until = performance.now() + seconds * 1000;
      let done = 0;
      let failed = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (performance.now() < until) {
            try {
              await chat(url, key, seq++);
              done += 1;
            } catch (err) {
              failed += 1;
              if (failed <= 3) console.log(`request failed: ${(err as Error).message}`);
            }
          }
        }),
      );
      return { done, failed, rate: done / seconds };
    };
    await closedLoop(3);
    const sustained = await closedLoop(SUSTAIN_S);
    console.log(
      `sustained (closed loop, ${CONCURRENCY} concurrent sync requests, ${NODES} nodes, ${SUSTAIN_S} s): ` +
        `${round(sustained.rate, 0)} jobs/s, ${sustained.failed} failed`,
    );

    // 4. Open loop at 50% and 90% of the sustained rate.
    const openLoop = async (rate: number) => {
      const latencies: number[] = [];
      const inflight: Array<Promise<void>> = [];
      let failed = 0;
      const t0 = performance.now();
      const total = Math.max(1, Math.round(rate * OPEN_LOOP_S));
      for (let i = 0; i < total; i += 1) {
        const due = t0 + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        inflight.push(
          chat(url, key, seq++).then(
            (ms) => void latencies.push(ms),
            () => void (failed += 1),
          ),
        );
      }
      await Promise.all(inflight);
      return { ...summarize(latencies), failed };
    };
    const metrics = async () =>
      (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
    const m0 = await metrics();
    const half = await openLoop(sustained.rate * 0.5);
    const m1 = await metrics();
    const dispatchP99 = histogramQuantileMs(m0, m1, 'rty_dispatch_latency_seconds', 0.99);
    const ninety = await openLoop(sustained.rate * 0.9);
    console.log(
      `open loop 50% (${round(sustained.rate * 0.5, 0)}/s): p50 ${round(half.p50, 1)} ms p99 ${round(half.p99, 1)} ms, ` +
        `dispatch p99 ≤ ${dispatchP99} ms (histogram bucket), ${half.failed} failed`,
    );
    console.log(
      `open loop 90% (${round(sustained.rate * 0.9, 0)}/s): p50 ${round(ninety.p50, 1)} ms p99 ${round(ninety.p99, 1)} ms, ${ninety.failed} failed`,
    );

    // 5. Backbone RSS with RSS_NODES connected simulated nodes: a fresh backbone process (every role) on the same
    // stores, told to expect a heartbeat a minute (5,000 signed heartbeats every 10 s would be a CPU benchmark of
    // their own on this machine), and a second simulator process.
    await sim.stop();
    await backbone.stop();
    const quiet = { ...env, HEARTBEAT_INTERVAL_MS: '60000', HEARTBEAT_TTL_MS: '180000' };
    const idle = rty(['serve', '--port', '0'], quiet);
    procs.push(idle);
    const idleUrl = (await idle.waitFor(/READY (http:\/\/\S+)/, 60_000))[1]!;
    const rssBefore = rssMb(idle.child.pid!);
    const many = rty(
      [
        'sim',
        '--url',
        idleUrl,
        '--nodes',
        String(RSS_NODES),
        '--models',
        MODEL,
        '--admin-token',
        ADMIN_TOKEN,
      ],
      quiet,
    );
    procs.push(many);
    const t5 = performance.now();
    await many.waitFor(/SIM READY/, 900_000);
    console.log(
      `${RSS_NODES} nodes bound, registered and connected in ${round((performance.now() - t5) / 1000, 1)} s`,
    );
    await sleep(3000);
    const rss = rssMb(idle.child.pid!);
    const connected = /rty_gateway_connected_nodes (\d+)/.exec(
      await (
        await fetch(`${idleUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      ).text(),
    )?.[1];
    console.log(
      `backbone RSS with ${connected} connected nodes: ${round(rss, 1)} MB (${round(rssBefore, 1)} MB before they connected)`,
    );

    const ratio = sustained.rate / rawRabbit;
    console.log(
      `jobs/s vs raw RabbitMQ ${round(ratio, 3)} (target ≥ 0.5), vs pg-boss ${round(sustained.rate / pgboss, 3)} (target ≥ 1)`,
    );
    console.log(
      benchLine('e2e', {
        jobs_per_s: round(sustained.rate, 0),
        raw_rabbit_per_s: round(rawRabbit, 0),
        ratio: round(ratio, 3),
        pgboss_per_s: round(pgboss, 0),
        dispatch_p99_ms: dispatchP99,
        rss_mb: round(rss, 0),
      }),
    );
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await stores.drop();
  }
}
