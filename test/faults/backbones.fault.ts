// The fault suite proper: two `rty serve` processes (separate OS processes) and two node simulators on
// servers of the suite's own (PostgreSQL cluster, redis-server, FerretDB and a RabbitMQ node, each on loopback
// ports of its own), under steady chat traffic, through a PostgreSQL fast restart, a Redis FLUSHALL, a Redis
// kill -9 and restart, a RabbitMQ kill -9 (down FAULTS_BROKER_OUTAGE_S, 2 s by default, plus its restart of 7-15 s)
// and a clean RabbitMQ stop/start, and FerretDB killed for FAULTS_MONGO_OUTAGE_S (the 45 s by
// default). Afterwards: both processes alive, no unhandled 'error' event, every DESIGN.md invariant (one
// terminal state, one settlement, balances equal to entries, nothing reserved or leased, one job document per
// job), and no job answered "refunded" that in fact succeeded; no innocent node penalized (the simulators
// never fail, so no attempt may carry a node_* cause and no node may be cooled down: every failed attempt in
// the run is the backbone's); no 500 answered; nothing dead-lettered or quarantined; and every request sent
// while the broker was down, or in flight when it went, answered 200 (confirmed publishing waits for the
// broker, unacked deliveries come back).
// What the clients saw (status codes) and the failed attempts' causes are printed for the report.
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSimOptions, startSim, type RunningSim } from '../../src/cli/commands/sim.js';
import { waitForInvariants } from '../../src/cli/invariants.js';
import { spawnRty, type RtyProcess } from '../../src/cli/rty-process.js';
import { LedgerService } from '../../src/modules/credits/index.js';
import { COLLECTIONS } from '../../src/modules/records/index.js';
import { connectMongo, type MongoStore } from '../../src/stores/mongo/client.js';
import { createPgPool, type Pool } from '../../src/stores/postgres/pool.js';
import { QUEUES } from '../../src/stores/rabbitmq/topology.js';
import { testLog } from '../harness.js';
import {
  startOwnFerret,
  startOwnPostgres,
  startOwnRedis,
  type OwnFerret,
  type OwnPostgres,
  type OwnRedis,
} from './servers.js';
import { startOwnRabbit, type OwnRabbit } from './rabbitmq-server.js';
import { adminPost } from '../admin-http.js';

const ADMIN_TOKEN = 'faults-suite-admin-token';
const MODEL = 'llama3-8b';
const SCHEMA = 'rty_faults';
const MONGO_OUTAGE_MS = Number(process.env.FAULTS_MONGO_OUTAGE_S ?? 45) * 1000;
const BROKER_OUTAGE_MS = Number(process.env.FAULTS_BROKER_OUTAGE_S ?? 2) * 1000;

let pgServer: OwnPostgres;
let redisServer: OwnRedis;
let ferret: OwnFerret;
let rabbit: OwnRabbit;
let env: Record<string, string>;
const procs: RtyProcess[] = [];
const sims: RunningSim[] = [];
let urls: string[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  pgServer = await startOwnPostgres();
  [redisServer, ferret, rabbit] = await Promise.all([
    startOwnRedis(),
    startOwnFerret(pgServer.adminUrl),
    startOwnRabbit(),
  ]);
  env = {
    POSTGRES_URL: pgServer.url,
    POSTGRES_SCHEMA: SCHEMA,
    REDIS_URL: redisServer.url,
    REDIS_KEY_PREFIX: 'faults:',
    MONGO_URL: ferret.url,
    MONGO_DB: 'faults',
    AMQP_URL: rabbit.url,
    ADMIN_TOKEN,
    LOG_LEVEL: 'warn',
    HEARTBEAT_INTERVAL_MS: '1000',
    ROUTING_RETRY_DELAYS_MS: '100,200,400,800',
    ROUTING_MAX_ATTEMPTS: '12',
    RECORDS_CONSUMER_BATCH_MAX_WAIT_MS: '20',
  };
  const pool = createPgPool({ url: pgServer.url, size: 1, schema: 'public' });
  await pool.query(`create schema ${SCHEMA}`);
  await pool.end();
  const migrate = spawnRty(['migrate'], env);
  const code = await new Promise<number | null>((r) => migrate.child.once('exit', (c) => r(c)));
  if (code !== 0) throw new Error(`rty migrate failed:\n${migrate.lines.join('\n')}`);
  for (let i = 0; i < 2; i++) procs.push(spawnRty(['serve', '--port', '0'], env));
  urls = await Promise.all(procs.map(async (p) => (await p.waitFor(/READY (http:\/\/\S+)/, 120_000))[1]!));
  for (const url of urls) {
    const opts = parseSimOptions(
      {
        url,
        nodes: '2',
        models: MODEL,
        environment: 'testnet',
        capacity: '3',
        latencyMs: '10',
        jitterMs: '20',
        failureRate: '0',
        disconnectRate: '0',
        slowRate: '0',
        skipBind: false,
        reportMs: '600000',
      },
      ADMIN_TOKEN,
    );
    sims.push(await startSim({ ...opts, heartbeatIntervalMs: 1000 }, testLog));
  }
}, 240_000);

afterAll(async () => {
  await Promise.allSettled(sims.map((s) => s.stop()));
  await Promise.allSettled(procs.map((p) => p.stop(15_000)));
  await Promise.allSettled([rabbit?.destroy(), ferret?.destroy(), redisServer?.destroy()]);
  await pgServer?.destroy();
}, 120_000);

const admin = <T>(url: string, path: string, body: unknown): Promise<T> =>
  adminPost<T>(url, ADMIN_TOKEN, path, body);

interface Answer {
  /** When the request was sent and answered (ms since the epoch). */
  sentAt: number;
  answeredAt: number;
  status: number;
  jobId: string | null;
  message: string;
}

describe('two backbones through PostgreSQL, Redis, RabbitMQ and MongoDB faults', () => {
  it('survive every fault: no crash, every invariant, no false refund, records complete', async () => {
    const [a, b] = urls as [string, string];
    const { account } = await admin<{ account: { id: string } }>(a, '/admin/v1/accounts', {
      email: 'faults@example.test',
    });
    const ns = await admin<{ id: string }>(b, `/admin/v1/accounts/${account.id}/namespaces`, { name: 'f' });
    const key = await admin<{ secret: string }>(a, `/admin/v1/namespaces/${ns.id}/keys`, {
      name: 'k',
      rateLimitPerS: 1000,
      burst: 1000,
    });
    await admin(b, `/admin/v1/namespaces/${ns.id}/topups`, {
      amountMicro: '1000000000',
      idempotencyKey: 'seed',
    });

    const answers: Answer[] = [];
    let stop = false;
    let n = 0;
    const worker = async () => {
      while (!stop) {
        const i = n++;
        const url = urls[i % 2]!;
        const sentAt = Date.now();
        try {
          const r = await fetch(`${url}/v1/chat/completions`, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              authorization: `Bearer ${key.secret}`,
              ...(i % 5 === 0 ? { 'idempotency-key': `fault-${i}` } : {}),
            },
            body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: `fault job ${i}` }] }),
            // Long enough to wait out a broker restart (7-15 s here) and the reconnect (at most 5 s after).
            signal: AbortSignal.timeout(60_000),
          });
          const text = await r.text();
          answers.push({
            sentAt,
            answeredAt: Date.now(),
            status: r.status,
            jobId: r.headers.get('x-request-id'),
            message: text.slice(0, 300),
          });
        } catch (err) {
          answers.push({ sentAt, answeredAt: Date.now(), status: 0, jobId: null, message: String(err) });
          await sleep(100);
        }
        await sleep(50);
      }
    };
    const load = Promise.all(Array.from({ length: 4 }, worker));
    const timeline: string[] = [];
    const mark = (what: string) =>
      timeline.push(`${new Date().toISOString()} ${what} (${answers.length} answers)`);

    await sleep(3_000);
    mark('postgres restart');
    await pgServer.restart();
    await sleep(4_000);
    mark('redis flushall');
    await redisServer.flushAll();
    await sleep(3_000);
    mark('redis kill -9');
    await redisServer.kill();
    await sleep(1_000);
    await redisServer.start();
    mark('redis back');
    await sleep(4_000);
    // The broker: kill -9 (confirmed persistent messages survive on disk; unacked deliveries come back),
    // then a clean stop. Requests sent meanwhile wait for the publisher's confirm, not fail.
    const brokerDown: Array<[number, number]> = [];
    let t = Date.now();
    mark(`rabbitmq kill -9 for ${BROKER_OUTAGE_MS} ms + restart`);
    await rabbit.kill();
    await sleep(BROKER_OUTAGE_MS);
    await rabbit.start();
    brokerDown.push([t, Date.now()]);
    mark('rabbitmq back');
    await sleep(4_000);
    t = Date.now();
    mark('rabbitmq clean stop + restart');
    await rabbit.stop();
    await rabbit.start();
    brokerDown.push([t, Date.now()]);
    mark('rabbitmq back');
    await sleep(4_000);
    mark(`ferretdb kill -9 for ${MONGO_OUTAGE_MS} ms`);
    await ferret.kill();
    await sleep(MONGO_OUTAGE_MS);
    await ferret.start();
    mark('ferretdb back');
    await sleep(4_000);
    stop = true;
    await load;
    mark('load stopped');

    // No process died, and none logged an unheard error event.
    for (const p of procs) {
      expect(p.child.exitCode, p.lines.slice(-20).join('\n')).toBeNull();
      expect(p.child.signalCode).toBeNull();
      expect(
        p.lines.filter((l) => /Unhandled 'error' event|uncaughtException|unhandledRejection/.test(l)),
      ).toEqual([]);
    }

    const pool: Pool = createPgPool({ url: pgServer.url, size: 2, schema: SCHEMA });
    const redis = new Redis(redisServer.url);
    const mongo: MongoStore = await connectMongo(ferret.url, 'faults');
    const ledger = new LedgerService({
      pool,
      log: testLog,
      options: { batchMaxWaitMs: 0, batchMaxSize: 1, batchConcurrency: 1, holdTimeoutMs: 60_000 },
    });
    try {
      const checks = await waitForInvariants(
        { pool, ledger, redis, redisPrefix: 'faults:', namespaceIds: [ns.id], mongo: mongo.db },
        { timeoutMs: 90_000, intervalMs: 500 },
      );
      const byStatus = new Map<number, number>();
      for (const x of answers) byStatus.set(x.status, (byStatus.get(x.status) ?? 0) + 1);
      const rows = await pool.query<{ id: string; status: string }>(
        'select id, status from jobs where namespace_id = $1',
        [ns.id],
      );
      const status = new Map(rows.rows.map((r) => [r.id, r.status]));
      // A job that succeeded (charged) must never have been answered as refunded / failed.
      const falseRefunds = answers.filter(
        (x) => x.status >= 400 && x.jobId && status.get(x.jobId) === 'succeeded' && /refund/i.test(x.message),
      );
      // And an answer with output is a succeeded job.
      const falseSuccess = answers.filter(
        (x) => x.status === 200 && x.jobId && status.get(x.jobId) !== 'succeeded',
      );
      // Failed attempts by cause (the fallback records: "<cause>: <reason>"), and any penalty cooldown.
      const fallbacks = await mongo.db
        .collection(COLLECTIONS.logs)
        .find({ ns: ns.id, type: 'job.fallback' })
        .project<{ body: { reason?: string; nodeAddress?: string } }>({ body: 1 })
        .toArray();
      const causes = new Map<string, number>();
      for (const f of fallbacks) {
        const cause = /^(\w+):/.exec(f.body.reason ?? '')?.[1] ?? 'unknown';
        causes.set(cause, (causes.get(cause) ?? 0) + 1);
      }
      const penalties = await pool.query<{ node_address: string; reason: string }>(
        `select node_address, reason from node_flags where set_by = 'system:penalty'`,
      );
      // Sent while the broker was down, or in flight when it went down.
      const duringBrokerOutage = answers.filter((x) =>
        brokerDown.some(([from, to]) => x.sentAt <= to && x.answeredAt >= from),
      );
      // Outages are not poison: no record batch and no job quarantined (the broker is the suite's own).
      const broker = await amqp.connect(rabbit.url);
      const depths: Record<string, number> = {};
      try {
        const ch = await broker.createChannel();
        for (const q of [QUEUES.recordsDead, QUEUES.quarantine])
          depths[q] = (await ch.checkQueue(q)).messageCount;
      } finally {
        await broker.close();
      }
      // Jobs that took long (a client gave up on one at 60 s?): their row and logs, for the report.
      const slow = await pool.query<{ id: string }>(
        `select id::text, status, attempts, mode, created_at, dispatched_at, finished_at, node_address
           from jobs where namespace_id = $1 and finished_at - created_at > interval '25 seconds'
          order by created_at`,
        [ns.id],
      );
      const slowJobs = await Promise.all(
        slow.rows.slice(0, 5).map(async (row) => ({
          row,
          logs: await mongo.db
            .collection(COLLECTIONS.logs)
            .find({ ns: ns.id, jobId: row.id })
            .project({ _id: 0, type: 1, ts: 1, body: 1 })
            .toArray()
            .catch((e: unknown) => String(e)),
          processLines: procs.flatMap((p, i) =>
            p.lines.filter((l) => l.includes(row.id)).map((l) => `${i}: ${l.slice(0, 400)}`),
          ),
        })),
      );
      const report = {
        timeline,
        slowJobs,
        quarantined: depths,
        duringBrokerOutage: {
          answers: duringBrokerOutage.length,
          slowestMs: Math.max(0, ...duringBrokerOutage.map((x) => x.answeredAt - x.sentAt)),
          notOk: duringBrokerOutage.filter((x) => x.status !== 200).map((x) => `${x.status} ${x.message}`),
        },
        failedAttemptCauses: Object.fromEntries(causes),
        penaltyFlags: penalties.rows,
        answers: answers.length,
        byStatus: Object.fromEntries(byStatus),
        jobs: rows.rowCount,
        sampleErrors: [
          ...new Set(answers.filter((x) => x.status !== 200).map((x) => `${x.status} ${x.message}`)),
        ].slice(0, 12),
        checks,
      };
      process.stdout.write(`fault suite report: ${JSON.stringify(report, null, 2)}\n`);
      expect(answers.filter((x) => x.status === 200).length).toBeGreaterThan(20);
      expect(checks.filter((c) => !c.ok)).toEqual([]);
      expect(depths).toEqual({ [QUEUES.recordsDead]: 0, [QUEUES.quarantine]: 0 });
      expect(falseRefunds).toEqual([]);
      expect(falseSuccess).toEqual([]);
      // No innocent node penalized: the simulators run without failures, so every failed attempt was ours.
      expect(fallbacks.filter((f) => /^node_/.test(f.body.reason ?? ''))).toEqual([]);
      expect(penalties.rows).toEqual([]);
      // No 500: every store fault is a retryable 503 (or is ridden out), never an internal error.
      expect(answers.filter((x) => x.status === 500)).toEqual([]);
      // The broker outages cost no client an error: every job sent or in flight then was answered.
      expect(duringBrokerOutage.length).toBeGreaterThan(0);
      expect(report.duringBrokerOutage.notOk).toEqual([]);
    } finally {
      await ledger.stop();
      await mongo.close();
      redis.disconnect();
      await pool.end();
    }
  });
});
