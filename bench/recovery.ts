// `npm run bench -- recovery`: start-to-READY of `rty serve` (compiled build), and the time from a fault's
// end (Redis FLUSHALL, PostgreSQL fast restart, FerretDB killed for BENCH_MONGO_OUTAGE_S, default 10 s) to the
// first answered request and to job records caught up; dead-lettered record batches. Every fault is on a
// server of its own (own PostgreSQL cluster, redis-server, FerretDB; own RabbitMQ vhost). Raw ceiling: a bare
// node process connecting to the same four stores.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseSimOptions, startSim } from '../src/cli/commands/sim.js';
import { spawnRty, type RtyProcess } from '../src/cli/rty-process.js';
import { COLLECTIONS } from '../src/modules/records/index.js';
import { createLogger } from '../src/platform/logger.js';
import { projectRoot } from '../src/platform/paths.js';
import { connectMongo } from '../src/stores/mongo/client.js';
import { createPgPool } from '../src/stores/postgres/pool.js';
import { QUEUES } from '../src/stores/rabbitmq/topology.js';
import { createAmqpTestVhost } from '../test/amqp-harness.js';
import { startOwnFerret, startOwnPostgres, startOwnRedis } from '../test/faults/servers.js';
import { benchLine, round } from './stats.js';

const ADMIN_TOKEN = 'bench-recovery-admin-token';
const MODEL = 'llama3-8b';
const SCHEMA = 'rty_bench_recovery';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = createLogger('silent');

/** ready_s is of the compiled build (what production runs): build it first. */
function build(root: string): void {
  const b = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  if (b.status !== 0) throw new Error('npm run build failed');
}

async function timeToReady(
  env: Record<string, string>,
  root: string,
): Promise<{ s: number; proc: RtyProcess }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(root, 'bin', 'rty.js'), 'serve', '--port', '0'], {
    env: { ...process.env, ...env, NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const on = (d: Buffer) => {
      for (const l of d.toString().split('\n')) {
        lines.push(l);
        const m = /READY (http:\/\/\S+)/.exec(l);
        if (m) resolve(m[1]!);
      }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.once('exit', (c) => reject(new Error(`serve exited ${c}: ${lines.slice(-10).join('\n')}`)));
  });
  const s = (performance.now() - t0) / 1000;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const proc = {
    child,
    lines,
    url,
    waitFor: () => Promise.reject(new Error('unused')),
    stop: async () => {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  } as unknown as RtyProcess & { url: string };
  return { s, proc };
}

async function rawReady(urls: { pg: string; redis: string; mongo: string; amqp: string }): Promise<number> {
  const code = `
    const t0 = performance.now();
    const pg = (await import('pg')).default; const { Redis } = await import('ioredis');
    const { MongoClient } = await import('mongodb'); const amqp = (await import('amqplib')).default;
    const c = new pg.Client(${JSON.stringify(urls.pg)}); await c.connect(); await c.query('select 1'); await c.end();
    const r = new Redis(${JSON.stringify(urls.redis)}); await r.ping(); r.disconnect();
    const m = new MongoClient(${JSON.stringify(urls.mongo)}); await m.connect(); await m.db('admin').command({ ping: 1 }); await m.close();
    const a = await amqp.connect(${JSON.stringify(urls.amqp)}); await a.close();
    process.stdout.write(String((performance.now() - t0) / 1000));`;
  const t0 = performance.now();
  execFileSync(process.execPath, ['--input-type=module', '-e', code], { cwd: projectRoot() });
  return (performance.now() - t0) / 1000;
}

export async function main(): Promise<void> {
  const root = projectRoot();
  const outageMs = Number(process.env.BENCH_MONGO_OUTAGE_S ?? 10) * 1000;
  process.stdout.write('recovery: building (npm run build)...\n');
  build(root);
  const pgServer = await startOwnPostgres();
  const [redisServer, ferret, vhost] = await Promise.all([
    startOwnRedis(),
    startOwnFerret(pgServer.adminUrl),
    createAmqpTestVhost(),
  ]);
  const env: Record<string, string> = {
    POSTGRES_URL: pgServer.url,
    POSTGRES_SCHEMA: SCHEMA,
    REDIS_URL: redisServer.url,
    REDIS_KEY_PREFIX: 'bench:',
    MONGO_URL: ferret.url,
    MONGO_DB: 'bench',
    AMQP_URL: vhost.url,
    ADMIN_TOKEN,
    API_KEY_PEPPER: 'bench-recovery-pepper-0123456789abcdef',
    NETWORK_SIGNING_KEY: `0x${randomBytes(32).toString('hex')}`,
    LOG_LEVEL: 'warn',
    HEARTBEAT_INTERVAL_MS: '1000',
    RECORDS_CONSUMER_BATCH_MAX_WAIT_MS: '20',
  };
  const pool = createPgPool({ url: pgServer.url, size: 2, schema: SCHEMA });
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    await pool.query(`create schema ${SCHEMA}`);
    const migrate = spawnRty(['migrate'], env);
    if ((await new Promise((r) => migrate.child.once('exit', r))) !== 0)
      throw new Error(`migrate failed: ${migrate.lines.join('\n')}`);

    const raw = await rawReady({
      pg: pgServer.url,
      redis: redisServer.url,
      mongo: ferret.url,
      amqp: vhost.url,
    });
    const { s: readyS, proc } = await timeToReady(env, root);
    cleanups.push(() => proc.stop());
    const url = (proc as unknown as { url: string }).url;
    const sim = await startSim(
      {
        ...parseSimOptions(
          {
            url,
            nodes: '2',
            models: MODEL,
            environment: 'testnet',
            capacity: '4',
            latencyMs: '5',
            jitterMs: '5',
            failureRate: '0',
            disconnectRate: '0',
            slowRate: '0',
            skipBind: false,
            reportMs: '600000',
          },
          ADMIN_TOKEN,
        ),
        heartbeatIntervalMs: 1000,
      },
      log,
    );
    cleanups.unshift(() => sim.stop());
    const adminPost = async <T>(path: string, body: unknown): Promise<T> => {
      const r = await fetch(`${url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
        body: JSON.stringify(body),
      });
      if (r.status >= 300) throw new Error(`${path}: ${r.status} ${await r.text()}`);
      return (await r.json()) as T;
    };
    const { account } = await adminPost<{ account: { id: string } }>('/admin/v1/accounts', {
      email: 'bench@example.test',
    });
    const ns = await adminPost<{ id: string }>(`/admin/v1/accounts/${account.id}/namespaces`, { name: 'b' });
    const key = await adminPost<{ secret: string }>(`/admin/v1/namespaces/${ns.id}/keys`, {
      name: 'k',
      rateLimitPerS: 1000,
      burst: 1000,
    });
    await adminPost(`/admin/v1/namespaces/${ns.id}/topups`, {
      amountMicro: '1000000000',
      idempotencyKey: 's',
    });
    let i = 0;
    const request = async (): Promise<number> => {
      try {
        const r = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
          body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: `bench ${i++}` }] }),
          signal: AbortSignal.timeout(30_000),
        });
        await r.text();
        return r.status;
      } catch {
        return 0;
      }
    };
    /** Seconds from now to the first 200. */
    const firstSuccess = async (): Promise<number> => {
      const t0 = performance.now();
      while ((await request()) !== 200) {
        if (performance.now() - t0 > 60_000) return 60;
        await sleep(20);
      }
      return (performance.now() - t0) / 1000;
    };
    while ((await request()) !== 200) await sleep(200); // nodes online
    for (let k = 0; k < 10; k++) await request();

    await redisServer.flushAll();
    const redisFlushS = await firstSuccess();
    await pgServer.restart();
    const pgRestartS = await firstSuccess();

    // MongoDB outage under the demo's rate (~6.5 jobs/s), then the time until every job has its document.
    await ferret.kill();
    const t0 = performance.now();
    let sent = 0;
    while (performance.now() - t0 < outageMs) {
      void request();
      sent++;
      await sleep(150);
    }
    await ferret.start();
    await sleep(1_000); // in-flight answers
    const tEnd = performance.now();
    const mongo = await connectMongo(ferret.url, 'bench');
    cleanups.push(() => mongo.close());
    // Capped at 60 s (reported as 60: not caught up).
    let catchupS = 60;
    while ((performance.now() - tEnd) / 1000 < 60) {
      const jobs = (await pool.query<{ n: number }>('select count(*)::int as n from jobs')).rows[0]!.n;
      const docs = await mongo.db
        .collection(COLLECTIONS.jobs)
        .countDocuments({})
        .catch(() => -1);
      if (docs >= jobs) {
        catchupS = (performance.now() - tEnd) / 1000;
        break;
      }
      await sleep(200);
    }
    const rows = execFileSync('rabbitmqctl', ['-q', 'list_queues', '-p', vhost.vhost, 'name', 'messages'], {
      encoding: 'utf8',
    });
    const dead = rows
      .split('\n')
      .map((l) => l.split('\t'))
      .filter((c) => c[0] === QUEUES.recordsDead)
      .reduce((sum, c) => sum + Number(c[1] ?? 0), 0);
    process.stdout.write(
      `recovery: raw store connect from a bare node process ${round(raw)} s (ceiling for ready_s); ` +
        `mongo outage ${outageMs / 1000} s with ${sent} requests sent\n`,
    );
    process.stdout.write(
      `${benchLine('recovery', {
        ready_s: round(readyS),
        redis_flush_recovery_s: round(redisFlushS),
        pg_restart_recovery_s: round(pgRestartS),
        records_catchup_s: round(catchupS),
        dead_lettered: dead,
      })}\n`,
    );
  } finally {
    for (const c of cleanups) await c().catch(() => undefined);
    await pool.end().catch(() => undefined);
    await Promise.allSettled([vhost.drop(), ferret.destroy(), redisServer.destroy()]);
    await pgServer.destroy();
  }
}
