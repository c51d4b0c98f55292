// `npm run bench -- e2e`: jobs through the whole durable path — HTTP API → ledger reserve → RabbitMQ →
// dispatch → simulated node over a signed WebSocket → settle → records — with the backbone, the node
// simulator and the load generator (bench/e2e-load.ts, keep-alive http.Agent) as separate processes. In the
// same run: the raw persistent RabbitMQ ceiling and pg-boss fetch+complete. Measured: sustained jobs/s; CPU ms
// per job over every process involved (from /proc, the measured window only); per-job store counts; added
// latency of sequential sync requests to a zero-latency node; dispatch p99 at half the sustained rate; records
// lag; backbone RSS with E2E_RSS_NODES connected nodes (0 skips it). Redis is a private redis-server of the
// run (exact command counts and CPU); PostgreSQL, RabbitMQ and FerretDB are the shared servers, so their
// server-wide parts (background writers, the broker, FerretDB) include whatever else runs on the machine.
// Knobs (env): E2E_NODES, E2E_CONCURRENCY, E2E_WARMUP_S, E2E_SUSTAIN_S, E2E_OPEN_LOOP_S, E2E_SEQ,
// E2E_RSS_NODES, E2E_PGBOSS_JOBS. Quick form: E2E_SUSTAIN_S=10 E2E_OPEN_LOOP_S=5 E2E_RSS_NODES=0.
// Profile: RTY_CPU_PROF_DIR=<dir> makes the backbone and the simulator write V8 CPU profiles there on exit;
// `npx tsx scripts/cpu-profile-summary.ts <file>` prints where the busy time went.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { createTestStores } from '../test/backbone-harness.js';
import { routingOptionsFromConfig } from '../src/modules/routing/index.js';
import { spawnRty as rty, type RtyProcess as Proc } from '../src/cli/rty-process.js';
import { pgBossRate } from './e2e-pgboss.js';
import {
  amqpPublished,
  byComm,
  commandStats,
  cpuDelta,
  pgCounters,
  pgPids,
  readProcs,
  tree,
  type CpuGroups,
} from './proc.js';
import { runRaw } from './routing.js';
import { backboneEnv, fundedApiKey, newAdminToken } from './backbone.js';
import { benchLine, round } from './stats.js';

const MODEL = 'bench-model';
const num = (name: string, d: number) => Number(process.env[name] ?? d);
const NODES = num('E2E_NODES', 40);
const RSS_NODES = num('E2E_RSS_NODES', 5000);
const CONCURRENCY = num('E2E_CONCURRENCY', 192);
const WARMUP_S = num('E2E_WARMUP_S', 3);
const SUSTAIN_S = num('E2E_SUSTAIN_S', 15);
const OPEN_LOOP_S = num('E2E_OPEN_LOOP_S', 10);
const SEQ = num('E2E_SEQ', 300);
const PGBOSS_JOBS = num('E2E_PGBOSS_JOBS', 20_000);
const ADMIN_TOKEN = newAdminToken();
const RECORD_COLLECTIONS = ['record_jobs', 'record_logs', 'record_qc'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
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
  const total = (b.get(Infinity) ?? 0) - (a.get(Infinity) ?? 0);
  if (total <= 0) return NaN;
  for (const le of [...b.keys()].sort((x, y) => x - y))
    if ((b.get(le) ?? 0) - (a.get(le) ?? 0) >= q * total) return le * 1000;
  return Infinity;
}

/** Runs the load generator; `onWarm` runs between its warm-up and its measured window. */
async function load(
  opts: Record<string, unknown>,
  onWarm?: (child: ChildProcess, warmJobs: number) => Promise<void>,
  onDone?: () => void,
): Promise<Record<string, number>> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL('./e2e-load.ts', import.meta.url).pathname, JSON.stringify(opts)],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: child.stdout! });
  let result: Record<string, number> | undefined;
  for await (const l of lines) {
    if (l.startsWith('WARM ')) {
      await onWarm?.(child, Number(l.slice(5)));
      child.stdin!.write('go\n');
    } else if (l.startsWith('DONE ')) {
      result = JSON.parse(l.slice(5)) as Record<string, number>;
      onDone?.();
      if (onWarm) child.stdin!.write('exit\n');
      break;
    }
  }
  await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
  if (!result) throw new Error(`load generator ended without a result (${JSON.stringify(opts)})`);
  return result;
}

async function startRedis(): Promise<{ url: string; pid: number; stop(): void }> {
  const port = randomInt(20_000, 40_000);
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => undefined);
  for (let i = 0; i < 50; i += 1) {
    if (
      await probe.connect().then(
        () => true,
        () => false,
      )
    )
      break;
    await sleep(100);
  }
  await probe.quit().catch(() => undefined);
  return { url, pid: child.pid!, stop: () => void child.kill('SIGTERM') };
}

/** Counts the commands a Redis server runs while it is watched: sent by clients, or run by Lua scripts. */
async function monitorRedis(
  url: string,
): Promise<{ stop(): Promise<{ client: number; lua: number; byCommand: Map<string, number> }> }> {
  const conn = new Redis(url);
  const monitor = await conn.monitor();
  const byCommand = new Map<string, number>();
  let lua = 0;
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source === 'lua') lua += 1;
    else {
      const cmd = String(args[0]).toLowerCase();
      byCommand.set(cmd, (byCommand.get(cmd) ?? 0) + 1);
    }
  });
  return {
    async stop() {
      monitor.disconnect();
      await conn.quit().catch(() => undefined);
      const client = [...byCommand.values()].reduce((a, b) => a + b, 0);
      return { client, lua, byCommand };
    },
  };
}

export async function main(): Promise<void> {
  const stores = await createTestStores();
  const redisServer = await startRedis();
  const redis = new Redis(redisServer.url);
  const procs: Proc[] = [];
  try {
    const config = stores.config();
    const routingOpts = routingOptionsFromConfig(config);
    const rawRabbit = await runRaw(stores.vhost.url, routingOpts.topology, Buffer.alloc(1024, 7));
    console.log(
      `raw RabbitMQ (amqplib, persistent, confirmed, classic, 1 KiB): ${round(rawRabbit, 0)} msg/s`,
    );
    const pgboss = await pgBossRate(stores, PGBOSS_JOBS);
    console.log(`pg-boss 10.4 fetch(100)+complete, 4 workers: ${round(pgboss, 0)} jobs/s`);

    const env = backboneEnv(config, {
      redisUrl: redisServer.url,
      adminToken: ADMIN_TOKEN,
      nodes: RSS_NODES + NODES,
    });
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
      env,
    );
    procs.push(sim);
    await sim.waitFor(/SIM READY/, 120_000);

    const { key } = await fundedApiKey(stores, config);
    const base = { url, key, model: MODEL };
    const mongo = stores.mongo.store.db;
    const docCount = async () => {
      let n = 0;
      for (const c of RECORD_COLLECTIONS) n += await mongo.collection(c).estimatedDocumentCount();
      return n;
    };

    // 1. Sustained closed loop; counters and CPU of every process over the measured window only.
    let groups: CpuGroups = {};
    let cpu0 = readProcs();
    const s0: Record<string, unknown> = {};
    let cpu1 = cpu0;
    let pub0 = NaN;
    const sustained = await load(
      { ...base, mode: 'closed', concurrency: CONCURRENCY, warmupS: WARMUP_S, seconds: SUSTAIN_S },
      async (loadgen) => {
        s0.redis = commandStats(await redis.info('commandstats'));
        s0.pg = await pgCounters(stores.db.pool, config.POSTGRES_SCHEMA);
        s0.docs = await docCount();
        const p = readProcs();
        const pgp = await pgPids(stores.db.pool, [`rty-${backbone.child.pid!.toString(36)}-`]);
        const ferret = await pgPids(stores.db.pool, ['FerretDB']);
        groups = {
          backbone: tree(p, backbone.child.pid!),
          simulator: tree(p, sim.child.pid!),
          'load generator': tree(p, loadgen.pid!),
          'postgresql (backbone backends)': pgp.own,
          'postgresql (background, shared)': pgp.shared,
          'ferretdb + its postgresql (shared)': [...byComm(p, /^ferretdb/i), ...ferret.own],
          'rabbitmq (shared)': byComm(p, /^beam\.smp$/),
          'redis (private)': [redisServer.pid],
        };
        cpu0 = readProcs();
        pub0 = await amqpPublished();
      },
      () => (cpu1 = readProcs()),
    );
    const pub1 = await amqpPublished();
    const jobs = sustained.done!;
    const cpu = cpuDelta(cpu0, cpu1, groups);
    const cpuTotal = Object.values(cpu).reduce((a, b) => a + b, 0);
    console.log(
      `sustained (closed loop, ${CONCURRENCY} concurrent sync requests, ${NODES} nodes, ${round(sustained.seconds!, 1)} s): ` +
        `${round(sustained.rate!, 0)} jobs/s, ${sustained.failed} failed`,
    );
    console.log(`CPU ms per job over the window (${jobs} jobs):`);
    for (const [g, ms] of Object.entries(cpu)) console.log(`  ${g.padEnd(36)} ${round(ms / jobs, 3)}`);
    console.log(`  ${'total'.padEnd(36)} ${round(cpuTotal / jobs, 3)}`);

    // 2. Records lag: from the window's end until every job so far has its MongoDB job document.
    const t2 = performance.now();
    const expected = async () =>
      Number(
        (
          await stores.db.pool
            .query<{
              n: string;
            }>(
              `select count(*) as n from ${config.POSTGRES_SCHEMA}.jobs where status in ('succeeded','failed','expired','cancelled')`,
            )
            .catch(() => ({ rows: [{ n: '0' }] }))
        ).rows[0]!.n,
      );
    const want = await expected();
    let lagS = NaN;
    while (performance.now() - t2 < 120_000) {
      if ((await mongo.collection('record_jobs').estimatedDocumentCount()) >= want) {
        lagS = (performance.now() - t2) / 1000;
        break;
      }
      await sleep(100);
    }
    const docs = (await docCount()) - (s0.docs as number);
    console.log(
      `records: ${want} terminal jobs have their documents ${round(lagS, 2)} s after the window; ${round(docs / jobs, 2)} MongoDB documents per job`,
    );

    // Per-job store counts over the same window (PostgreSQL stats are flushed within ~1 s: wait for them;
    // Redis commands after the window — background timers only — are included).
    await sleep(1_500);
    const r1 = commandStats(await redis.info('commandstats'));
    const r0 = s0.redis as Map<string, number>;
    const redisDelta = [...r1].map(([c, n]) => [c, n - (r0.get(c) ?? 0)] as const).filter(([, n]) => n > 0);
    const redisTotal = redisDelta.reduce((s, [, n]) => s + n, 0);
    const pg1 = await pgCounters(stores.db.pool, config.POSTGRES_SCHEMA);
    const pg0 = s0.pg as typeof pg1;
    console.log(
      `per job: Redis commands ${round(redisTotal / jobs, 2)} (${redisDelta
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8)
        .map(([c, n]) => `${c} ${round(n / jobs, 2)}`)
        .join(
          ', ',
        )}; INFO commandstats also counts the commands Lua scripts run; includes heartbeats and timers)`,
    );
    console.log(
      `per job: PostgreSQL row writes ${round((pg1.tupWrites - pg0.tupWrites) / jobs, 2)}, table scans ${round((pg1.scans - pg0.scans) / jobs, 2)} ` +
        `(schema ${config.POSTGRES_SCHEMA}; pg_stat_statements is not preloaded), commits ${round((pg1.commits - pg0.commits) / jobs, 2)} (database-wide, shared)`,
    );
    console.log(
      `per job: RabbitMQ messages published ${round((pub1 - pub0) / jobs, 2)} (broker-wide messages_received_total: ` +
        `includes other users of the broker; no management plugin for per-vhost counts)`,
    );

    // 3. Added latency: sequential sync requests to zero-latency nodes (node time ≈ 0: the simulator answers at once).
    // MONITOR runs over this phase only: it tells the commands clients send (round trips) from those Lua scripts
    // run inside the server, which INFO commandstats cannot; an idle window of the same length before it gives
    // the background share (heartbeats, timers) to subtract.
    const idleWindow = await monitorRedis(redisServer.url);
    const tIdle = performance.now();
    await sleep(3_000);
    const idleCounts = await idleWindow.stop();
    const idleS = (performance.now() - tIdle) / 1000;
    const seqWindow = await monitorRedis(redisServer.url);
    const tSeq = performance.now();
    const seq = await load({ ...base, mode: 'seq', count: SEQ });
    const seqCounts = await seqWindow.stop();
    const seqS = (performance.now() - tSeq) / 1000;
    const perSync = (n: number, idle: number) => Math.max(0, n - (idle * seqS) / idleS) / SEQ;
    console.log(
      `per sync request (sequential phase, background of an idle ${round(idleS, 1)} s window subtracted): ` +
        `Redis commands sent by clients (pipelined ones share a round trip) ${round(perSync(seqCounts.client, idleCounts.client), 2)} ` +
        `(${[...seqCounts.byCommand]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 6)
          .map(([c, n]) => `${c} ${round(perSync(n, idleCounts.byCommand.get(c) ?? 0), 2)}`)
          .join(', ')}), ` +
        `commands run inside Lua scripts ${round(perSync(seqCounts.lua, idleCounts.lua), 2)}`,
    );
    console.log(
      `added latency (${SEQ} sequential sync requests, zero-latency nodes): p50 ${round(seq.p50!, 2)} ms p99 ${round(seq.p99!, 2)} ms, ${seq.failed} failed`,
    );

    // 4. Open loop at half the sustained rate: dispatch p99 (enqueued → frame sent) from the histogram.
    const metrics = async () =>
      (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
    const m0 = await metrics();
    const half = await load({
      ...base,
      mode: 'open',
      rate: sustained.rate! * 0.5,
      seconds: OPEN_LOOP_S,
      concurrency: 1024,
    });
    const dispatchP99 = histogramQuantileMs(m0, await metrics(), 'rty_dispatch_latency_seconds', 0.99);
    console.log(
      `open loop 50% (${round(sustained.rate! * 0.5, 0)}/s): p50 ${round(half.p50!, 1)} ms p99 ${round(half.p99!, 1)} ms, ` +
        `dispatch p99 ≤ ${dispatchP99} ms (histogram bucket), ${half.failed} failed`,
    );

    // 5. Backbone RSS with RSS_NODES connected nodes (a fresh backbone and simulator; heartbeats a minute apart).
    let rss = NaN;
    await sim.stop();
    await backbone.stop();
    if (RSS_NODES > 0) {
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
      rss = rssMb(idle.child.pid!);
      console.log(
        `backbone RSS with ${RSS_NODES} connected nodes: ${round(rss, 1)} MB (${round(rssBefore, 1)} MB before)`,
      );
    } else console.log('backbone RSS phase skipped (E2E_RSS_NODES=0): rss_mb=NaN');

    const ratio = sustained.rate! / rawRabbit;
    console.log(
      `jobs/s vs raw RabbitMQ ${round(ratio, 3)}, vs pg-boss ${round(sustained.rate! / pgboss, 3)}`,
    );
    console.log(
      benchLine('e2e', {
        jobs_per_s: round(sustained.rate!, 0),
        raw_rabbit_per_s: round(rawRabbit, 0),
        ratio: round(ratio, 3),
        pgboss_per_s: round(pgboss, 0),
        cpu_ms_per_job: round(cpuTotal / jobs, 3),
        overhead_p50_ms: round(seq.p50!, 2),
        overhead_p99_ms: round(seq.p99!, 2),
        dispatch_p99_ms: dispatchP99,
        records_lag_s: round(lagS, 2),
        rss_mb: round(rss, 0),
      }),
    );
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await redis.quit().catch(() => undefined);
    redisServer.stop();
    await stores.drop();
  }
}
