// `rty demo` (npm run demo): the whole network on this machine, in a PostgreSQL schema, Redis prefix and Mongo
// database of its own. Starts a backbone process (`rty serve`, every role) and a node simulator process
// (`rty sim`, signed WebSocket agents, a few failing and disconnecting); creates an account, namespace, API key
// and credits through the Admin API; drives mixed traffic with the official `openai` client (sync, polling,
// streaming-free chat, completions, embeddings, an idempotent retry) with live progress; then checks every
// DESIGN.md invariant on the stores and prints a summary. Exit 0 only if every invariant held.
import { randomBytes } from 'node:crypto';
import amqp from 'amqplib';
import { createCreditsModule } from '../../modules/credits/index.js';
import { routingOptionsFromConfig } from '../../modules/routing/index.js';
import { connectMongo, type MongoStore } from '../../stores/mongo/client.js';
import { createPgPool, type Pool } from '../../stores/postgres/pool.js';
import { connectAmqp } from '../../stores/rabbitmq/connection.js';
import { staticTopology, topologyNames } from '../../stores/rabbitmq/topology.js';
import { createRedis, deleteKeysByPrefix } from '../../stores/redis/client.js';
import type { CliContext } from '../context.js';
import { waitForInvariants } from '../invariants.js';
import { spawnRty, type RtyProcess } from '../rty-process.js';
import { driveTraffic, type TrafficOutcome } from './demo-traffic.js';
import { runMigrate } from './migrate.js';

const MODELS = ['llama3-8b', 'mistral-7b'];
const EMBEDDING_MODEL = 'nomic-embed';
const TOPUP_MICRO = 50_000_000n;
const credits = (v: bigint) => `${v / 1_000_000n}.${(v % 1_000_000n).toString().padStart(6, '0')}`;
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
};

export interface DemoOptions {
  keep: boolean;
  nodes: number;
  requests: number;
  concurrency: number;
}

async function api<T>(url: string, token: string, path: string, body: unknown): Promise<T> {
  const r = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`POST ${path} → ${r.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

export async function runDemo(ctx: CliContext, opts: DemoOptions): Promise<number> {
  const run = `demo_${Date.now().toString(36)}`;
  const adminToken = `demo-admin-${randomBytes(12).toString('hex')}`;
  const config = Object.freeze({
    ...ctx.config,
    POSTGRES_SCHEMA: run,
    REDIS_KEY_PREFIX: `${run}:`,
    MONGO_DB: run,
    // Its own RabbitMQ names too: two demos, or a demo beside `rty serve`, on one vhost never share a queue.
    DEPLOYMENT: run,
    ADMIN_TOKEN: adminToken,
  });
  const env: Record<string, string> = {
    POSTGRES_SCHEMA: run,
    REDIS_KEY_PREFIX: `${run}:`,
    MONGO_DB: run,
    DEPLOYMENT: run,
    ADMIN_TOKEN: adminToken,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    HEARTBEAT_INTERVAL_MS: '2000',
    JOB_ATTEMPT_TIMEOUT_MS: '3000',
    ROUTING_RETRY_DELAYS_MS: '200,500,1000',
    NODE_FAILURE_COOLDOWN_MS: '2000',
    RATE_LIMIT_NAMESPACE_PER_S: '1000',
    RATE_LIMIT_NAMESPACE_BURST: '2000',
  };
  const out = ctx.out;
  const step = (n: number, text: string) => out(`\n[${n}] ${text}`);
  const procs: RtyProcess[] = [];
  let pool: Pool | undefined;
  let mongo: MongoStore | undefined;
  const redis = createRedis(config.REDIS_URL);
  let verdict = 'DEMO FAILED an unexpected error';
  try {
    step(
      1,
      `Stores: migrating a fresh PostgreSQL schema "${run}", Mongo database "${run}", RabbitMQ topology`,
    );
    await runMigrate({ ...ctx, config, out: (l) => out(`    ${l}`) }, { dryRun: false });

    step(
      2,
      'Backbone: `rty serve` with every role (cloud, io, gate, admin, status, workers) as its own process',
    );
    const backbone = spawnRty(['serve', '--port', '0'], env);
    procs.push(backbone);
    const url = (await backbone.waitFor(/READY (http:\/\/\S+)/, 90_000))[1]!;
    out(`    serving on ${url} (OpenAPI: ${url}/openapi.json, metrics: ${url}/metrics)`);

    step(3, 'Admin API: an account, a namespace, an API key (secret shown once, stored hashed), credits');
    const created = await api<{ account: { id: string } }>(url, adminToken, '/admin/v1/accounts', {
      email: `${run}@example.test`,
    });
    const accountId = created.account.id;
    const nsBody = await api<{ id: string }>(url, adminToken, `/admin/v1/accounts/${accountId}/namespaces`, {
      name: 'demo',
    });
    const namespaceId = nsBody.id;
    const keyBody = await api<{ secret: string }>(
      url,
      adminToken,
      `/admin/v1/namespaces/${namespaceId}/keys`,
      {
        name: 'demo key',
        // Above the default 20/s: the demo's polling clients read job status several times a second.
        rateLimitPerS: 500,
        burst: 1000,
      },
    );
    const apiKey = keyBody.secret;
    await api(url, adminToken, `/admin/v1/namespaces/${namespaceId}/topups`, {
      amountMicro: TOPUP_MICRO.toString(),
      idempotencyKey: `${run}-topup`,
    });
    out(
      `    account ${accountId}, namespace ${namespaceId}, key ${apiKey.slice(0, 12)}…, ${credits(TOPUP_MICRO)} credits`,
    );

    step(
      4,
      `Nodes: \`rty sim\` runs ${opts.nodes} WebSocket agents (own EVM keys, bound by signature, heartbeating); ` +
        'some fail or disconnect mid-job',
    );
    const sim = spawnRty(
      [
        'sim',
        '--url',
        url,
        '--nodes',
        String(opts.nodes),
        '--models',
        [...MODELS, EMBEDDING_MODEL].join(','),
        '--latency-ms',
        '40',
        '--failure-rate',
        '0.06',
        '--disconnect-rate',
        '0.03',
        '--admin-token',
        adminToken,
      ],
      env,
    );
    procs.push(sim);
    out(`    ${(await sim.waitFor(/SIM READY.*/, 120_000))[0]}`);
    await new Promise((r) => setTimeout(r, 500));

    step(5, `Traffic: ${opts.requests} requests with the openai client (${opts.concurrency} in flight)`);
    const t0 = performance.now();
    let lastPrint = 0;
    const outcomes: TrafficOutcome[] = await driveTraffic({
      baseUrl: url,
      apiKey,
      models: MODELS,
      embeddingModel: EMBEDDING_MODEL,
      requests: opts.requests,
      concurrency: opts.concurrency,
      onProgress: (done, all) => {
        if (performance.now() - lastPrint < 1000 && done < opts.requests) return;
        lastPrint = performance.now();
        const ok = all.filter((o) => o.ok).length;
        out(
          `    ${done}/${opts.requests} answered, ${ok} ok, ${done - ok} errors, ${(done / ((performance.now() - t0) / 1000)).toFixed(1)} req/s`,
        );
      },
    });
    const elapsedS = (performance.now() - t0) / 1000;
    const errors = outcomes.filter((o) => !o.ok);
    for (const e of errors.slice(0, 5))
      out(`    error: ${e.kind} → ${e.status} ${e.error ?? ''}`.slice(0, 240));

    step(6, 'Settling: waiting for every job to be terminal and recorded in MongoDB');
    pool = createPgPool({ url: config.POSTGRES_URL, size: 2, schema: run, applicationName: 'rty-demo' });
    mongo = await connectMongo(config.MONGO_URL, run);
    const { ledger } = createCreditsModule({
      config: { ...config, LEDGER_HOLD_TIMEOUT_MS: 60_000 },
      stores: { pool },
      log: ctx.log,
      unbatched: true,
    });
    const checks = await waitForInvariants(
      {
        pool,
        ledger,
        redis,
        redisPrefix: config.REDIS_KEY_PREFIX,
        namespaceIds: [namespaceId],
        mongo: mongo.db,
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    await ledger.stop();

    step(7, 'Invariants (DESIGN.md §2)');
    for (const c of checks) out(`    ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`);
    const audit = await pool.query<{ n: number }>('select count(*)::int as n from audit_log');
    out(`    audit log: ${audit.rows[0]!.n} admin changes, hash-chained (\`rty audit verify\`)`);

    const jobs = await pool.query<{ status: string; n: number; retried: number }>(
      `select status, count(*)::int as n, count(*) filter (where attempts > 1)::int as retried
         from jobs where namespace_id = $1 group by status`,
      [namespaceId],
    );
    const count = (s: string) => jobs.rows.find((r) => r.status === s)?.n ?? 0;
    const total = jobs.rows.reduce((a, r) => a + r.n, 0);
    const retried = jobs.rows.reduce((a, r) => a + r.retried, 0);
    const money = await pool.query<{ kind: string; amount: string }>(
      `select kind, sum(amount)::text as amount from ledger_entries where namespace_id = $1 group by kind`,
      [namespaceId],
    );
    const sum = (k: string) => BigInt(money.rows.find((r) => r.kind === k)?.amount ?? '0');
    const bal = await pool.query<{ available: string; reserved: string }>(
      'select available, reserved from credit_balances where namespace_id = $1',
      [namespaceId],
    );
    const latencies = outcomes.filter((o) => o.ok && o.kind !== 'poll').map((o) => o.latencyMs);
    const failedJobs = total - count('succeeded');

    step(8, 'Summary');
    out(
      `    jobs: ${total} (${count('succeeded')} done, ${count('failed')} failed, ${count('expired')} expired, ${count('cancelled')} cancelled), ${retried} retried on another node`,
    );
    out(
      `    requests: ${outcomes.length} answered, ${errors.length} errors; ${(total / elapsedS).toFixed(1)} jobs/s over ${elapsedS.toFixed(1)} s`,
    );
    out(
      `    latency (sync): p50 ${pct(latencies, 50).toFixed(0)} ms, p99 ${pct(latencies, 99).toFixed(0)} ms`,
    );
    out(
      `    credits: reserved ${credits(sum('reserve'))}, settled ${credits(sum('settle'))}, refunded ${credits(sum('release') + sum('void') + sum('hold_expire'))}; balance ${credits(BigInt(bal.rows[0]?.available ?? '0'))} available, ${credits(BigInt(bal.rows[0]?.reserved ?? '0'))} reserved`,
    );
    out(
      `    where next: ${url}/status · ${url}/openapi.json · ${url}/metrics (while it runs: \`npm run rty -- serve\` + \`npm run rty -- sim --nodes 5\`)`,
    );
    out(
      `    commands: rty ledger verify · rty audit verify · rty queue health · rty records … · rty snapshot create · rty demo --keep`,
    );

    const broken = checks.filter((c) => !c.ok);
    // Injected failures may exhaust a job's attempts (then it is refunded): that is not an error of the system.
    const unexplained = errors.filter((e) => ![502, 503, 504].includes(e.status));
    if (broken.length > 0) verdict = `DEMO FAILED invariant: ${broken.map((c) => c.name).join('; ')}`;
    else if (unexplained.length > 0)
      verdict = `DEMO FAILED ${unexplained.length} requests got unexpected errors (first: ${unexplained[0]!.status} ${unexplained[0]!.error ?? ''})`;
    else if (total < opts.requests)
      verdict = `DEMO FAILED only ${total} of ${opts.requests} requests became jobs`;
    else
      verdict = `DEMO OK jobs=${total} failed=${failedJobs} retried=${retried} jobs_per_s=${(total / elapsedS).toFixed(1)} ledger=verified`;
  } catch (err) {
    verdict = `DEMO FAILED ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
    for (const p of procs) for (const l of p.lines.slice(-10)) out(`    | ${l}`);
  } finally {
    for (const p of [...procs].reverse()) await p.stop().catch(() => undefined);
    if (!opts.keep) {
      // The retry tiers the backbone declared are those of its env (ROUTING_RETRY_DELAYS_MS), not of this process.
      await cleanup({ ...config, ROUTING_RETRY_DELAYS_MS: env.ROUTING_RETRY_DELAYS_MS! }, pool, run).catch(
        (err: unknown) => out(`    cleanup: ${String(err)}`),
      );
      await mongo?.db.dropDatabase().catch(() => undefined);
      await deleteKeysByPrefix(redis, `${run}:`).catch(() => undefined);
      out(
        `\n(cleaned up schema, Mongo database, Redis prefix and RabbitMQ queues and exchanges of ${run}; --keep leaves them)`,
      );
    }
    await mongo?.close().catch(() => undefined);
    await pool?.end().catch(() => undefined);
    redis.disconnect();
  }
  out(verdict);
  return verdict.startsWith('DEMO OK') ? 0 : 1;
}

/** Deletes the run's RabbitMQ queues and exchanges (its deployment's: lanes, fixed ones, retry tiers, the
 * marker) and drops its schema. */
async function cleanup(
  config: Parameters<typeof routingOptionsFromConfig>[0],
  pool: Pool | undefined,
  schema: string,
): Promise<void> {
  const lanes = pool
    ? await pool
        .query<{ queue_name: string }>('select queue_name from routing_lanes')
        .catch(() => ({ rows: [] as Array<{ queue_name: string }> }))
    : { rows: [] as Array<{ queue_name: string }> };
  const topology = staticTopology(routingOptionsFromConfig(config).topology);
  const conn = await connectAmqp(config.AMQP_URL, 'rty-demo-cleanup');
  try {
    // A failed delete closes its channel: each on a fresh one, so one refusal does not stop the rest.
    const each = async (names: string[], del: (ch: amqp.Channel, n: string) => Promise<unknown>) => {
      for (const n of names) {
        const ch = await conn.createChannel();
        ch.on('error', () => undefined);
        await del(ch, n).catch(() => undefined);
        await ch.close().catch(() => undefined);
      }
    };
    await each([...lanes.rows.map((l) => l.queue_name), ...topology.queues.map((q) => q.name)], (ch, n) =>
      ch.deleteQueue(n),
    );
    await each([...topology.exchanges.map((e) => e.name), topologyNames(config.DEPLOYMENT).marker], (ch, n) =>
      ch.deleteExchange(n),
    );
  } finally {
    await conn.close();
  }
  if (pool) await pool.query(`drop schema if exists "${schema}" cascade`);
}
