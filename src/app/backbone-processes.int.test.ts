// Two backbone processes (`rty serve`, every role, separate OS processes) on one set of stores, with simulated
// nodes split between them (some jobs fail on their node and are retried elsewhere) and consumer traffic from
// the official openai client sent to both: no job is delivered to a node more often than it was attempted,
// no job is settled twice, and every DESIGN.md invariant holds afterwards.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, type TestStores } from '../../test/backbone-harness.js';
import { waitForInvariants } from '../cli/invariants.js';
import { spawnRty, type RtyProcess } from '../cli/rty-process.js';
import { parseSimOptions, startSim, type RunningSim } from '../cli/commands/sim.js';
import { LedgerService } from '../modules/credits/index.js';
import { testLog } from '../../test/harness.js';
import { adminPost } from '../../test/admin-http.js';

const ADMIN_TOKEN = 'two-process-admin-token';
const MODEL = 'llama3-8b';
let stores: TestStores;
const procs: RtyProcess[] = [];
const sims: RunningSim[] = [];
let urls: string[] = [];

beforeAll(async () => {
  stores = await createTestStores();
  const c = stores.config();
  const env = {
    POSTGRES_SCHEMA: c.POSTGRES_SCHEMA,
    REDIS_KEY_PREFIX: c.REDIS_KEY_PREFIX,
    AMQP_URL: c.AMQP_URL,
    MONGO_DB: c.MONGO_DB,
    ADMIN_TOKEN,
    LOG_LEVEL: 'warn',
    ROUTING_RETRY_DELAYS_MS: '50,100,200',
    ROUTING_MAX_ATTEMPTS: '8',
    NODE_COOLDOWN_PENALTY: '1000000',
    RECORDS_CONSUMER_BATCH_MAX_WAIT_MS: '20',
    HEARTBEAT_INTERVAL_MS: '1000',
  };
  for (let i = 0; i < 2; i++) procs.push(spawnRty(['serve', '--port', '0'], env));
  urls = await Promise.all(procs.map(async (p) => (await p.waitFor(/READY (http:\/\/\S+)/, 90_000))[1]!));
  // Three nodes on each process; every node fails a share of its jobs (the job is then retried elsewhere).
  for (const url of urls) {
    const opts = parseSimOptions(
      {
        url,
        nodes: '3',
        models: MODEL,
        environment: 'testnet',
        capacity: '3',
        latencyMs: '10',
        jitterMs: '20',
        failureRate: '0.15',
        disconnectRate: '0',
        slowRate: '0',
        skipBind: false,
        reportMs: '600000',
      },
      ADMIN_TOKEN,
    );
    sims.push(await startSim({ ...opts, heartbeatIntervalMs: 1000 }, testLog));
  }
}, 180_000);

afterAll(async () => {
  await Promise.allSettled(sims.map((s) => s.stop()));
  await Promise.allSettled(procs.map((p) => p.stop()));
  await stores?.drop();
});

const admin = <T>(url: string, path: string, body: unknown): Promise<T> =>
  adminPost<T>(url, ADMIN_TOKEN, path, body);

describe('two backbone processes on the same stores', () => {
  it('dispatch each job to one node at a time and settle it once; every invariant holds', async () => {
    const [a, b] = urls as [string, string];
    const { account } = await admin<{ account: { id: string } }>(a, '/admin/v1/accounts', {
      email: 'two@example.test',
    });
    const ns = await admin<{ id: string }>(b, `/admin/v1/accounts/${account.id}/namespaces`, { name: 'two' });
    const key = await admin<{ secret: string }>(a, `/admin/v1/namespaces/${ns.id}/keys`, {
      name: 'k',
      rateLimitPerS: 1000,
      burst: 1000,
    });
    await admin(b, `/admin/v1/namespaces/${ns.id}/topups`, {
      amountMicro: '100000000',
      idempotencyKey: 'seed',
    });

    const clients = urls.map((u) => new OpenAI({ baseURL: `${u}/v1`, apiKey: key.secret, maxRetries: 0 }));
    const jobIds: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < 60) {
          const i = next++;
          const { data, response } = await clients[i % 2]!.chat.completions.create({
            model: MODEL,
            messages: [{ role: 'user', content: `job ${i} of two processes` }],
          }).withResponse();
          expect(data.choices[0]?.message.content?.length).toBeGreaterThan(0);
          jobIds.push(response.headers.get('x-request-id')!);
        }
      }),
    );
    expect(new Set(jobIds).size).toBe(60);

    const ledger = new LedgerService({
      pool: stores.db.pool,
      log: testLog,
      options: { batchMaxWaitMs: 0, batchMaxSize: 1, batchConcurrency: 1, holdTimeoutMs: 60_000 },
    });
    const scope = {
      pool: stores.db.pool,
      ledger,
      redis: stores.space.redis,
      redisPrefix: stores.config().REDIS_KEY_PREFIX,
      namespaceIds: [ns.id],
      mongo: stores.mongo.store.db,
    };
    const checks = await waitForInvariants(scope, { timeoutMs: 10_000 });
    await ledger.stop();
    expect(checks.filter((x) => !x.ok)).toEqual([]);

    // Deliveries seen by the nodes: never more than the job's attempts (a second delivery is a retry after a
    // failure, never a parallel dispatch), and each job's one success settled once.
    const rows = await stores.db.pool.query<{ id: string; attempts: number; status: string }>(
      'select id, attempts, status from jobs where namespace_id = $1',
      [ns.id],
    );
    const deliveries = new Map<string, number>();
    for (const agent of sims.flatMap((s) => s.agents))
      for (const f of agent.jobFrames) deliveries.set(f.jobId, (deliveries.get(f.jobId) ?? 0) + 1);
    expect(rows.rows).toHaveLength(60);
    for (const r of rows.rows) {
      expect(r.status).toBe('succeeded');
      expect(deliveries.get(r.id)).toBe(r.attempts);
    }
    const retried = rows.rows.filter((r) => r.attempts > 1).length;
    expect(retried).toBeGreaterThan(0); // the failure injection did cause retries

    // Both processes dispatched jobs (each one's consumer took a share).
    const finished = await Promise.all(
      urls.map(async (u) => {
        const m = /rty_jobs_finished_total\{status="succeeded"\} (\d+)/.exec(
          await (await fetch(`${u}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text(),
        );
        return Number(m?.[1] ?? 0);
      }),
    );
    expect(finished.every((n) => n > 0)).toBe(true);
    expect(finished[0]! + finished[1]!).toBe(60);
  });
});
