// A backbone OS process killed (SIGKILL) with a full batch of jobs in flight, next to a second one on the same
// stores: nothing is lost (every job that reached PostgreSQL ends in exactly one terminal state, refunded or run
// by the survivor), nothing is charged twice, every succeeded job has one earning, and the invariants hold.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, type TestStores } from '../../test/backbone-harness.js';
import { testLog } from '../../test/harness.js';
import { waitForInvariants } from '../cli/invariants.js';
import { spawnRty, type RtyProcess } from '../cli/rty-process.js';
import { parseSimOptions, startSim, type RunningSim } from '../cli/commands/sim.js';
import { LedgerService } from '../modules/credits/index.js';
import { adminPost } from '../../test/admin-http.js';

const ADMIN_TOKEN = 'kill-test-admin-token';
const MODEL = 'llama3-8b';
let stores: TestStores;
const procs: RtyProcess[] = [];
let sim: RunningSim | undefined;
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
    // The killed process's leases run out quickly, its unpublished jobs are refunded within seconds.
    LEASE_TTL_MS: '3000',
    JOBS_RECOVER_INTERVAL_MS: '300',
    JOBS_RECOVER_GRACE_MS: '1000',
    RECORDS_CONSUMER_BATCH_MAX_WAIT_MS: '20',
    HEARTBEAT_INTERVAL_MS: '1000',
  };
  for (let i = 0; i < 2; i++) procs.push(spawnRty(['serve', '--port', '0'], env));
  urls = await Promise.all(procs.map(async (p) => (await p.waitFor(/READY (http:\/\/\S+)/, 90_000))[1]!));
  // The nodes are on the survivor: the victim's dispatches relay to them.
  const opts = parseSimOptions(
    {
      url: urls[1]!,
      nodes: '4',
      models: MODEL,
      environment: 'testnet',
      capacity: '8',
      latencyMs: '150',
      jitterMs: '50',
      failureRate: '0',
      disconnectRate: '0',
      slowRate: '0',
      skipBind: false,
      reportMs: '600000',
    },
    ADMIN_TOKEN,
  );
  sim = await startSim({ ...opts, heartbeatIntervalMs: 1000 }, testLog);
}, 180_000);

afterAll(async () => {
  await sim?.stop().catch(() => undefined);
  await Promise.allSettled(procs.map((p) => p.stop()));
  await stores?.drop();
});

const admin = <T>(url: string, path: string, body: unknown): Promise<T> =>
  adminPost<T>(url, ADMIN_TOKEN, path, body);

describe('a backbone killed with a full batch in flight', () => {
  it('loses nothing, charges nothing twice, and every invariant holds', async () => {
    const [victim, survivor] = urls as [string, string];
    const { account } = await admin<{ account: { id: string } }>(survivor, '/admin/v1/accounts', {
      email: 'kill@example.test',
    });
    const ns = await admin<{ id: string }>(survivor, `/admin/v1/accounts/${account.id}/namespaces`, {
      name: 'kill',
    });
    const key = await admin<{ secret: string }>(survivor, `/admin/v1/namespaces/${ns.id}/keys`, {
      name: 'k',
      rateLimitPerS: 10_000,
      burst: 10_000,
    });
    await admin(survivor, `/admin/v1/namespaces/${ns.id}/topups`, {
      amountMicro: '1000000000',
      idempotencyKey: 'seed',
    });
    const send = (url: string, i: number) =>
      fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
        body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: `job ${i}` }] }),
      }).then(
        (r) => r.status,
        () => 0, // the connection died with the process
      );
    // A burst at the victim (its submit and finish batches fill up), a trickle at the survivor.
    const calls = Array.from({ length: 150 }, (_, i) => send(victim, i));
    const rows = async () =>
      (
        await stores.db.pool.query<{ n: number }>(
          'select count(*)::int as n from jobs where namespace_id = $1',
          [ns.id],
        )
      ).rows[0]!.n;
    for (let i = 0; i < 500 && (await rows()) < 60; i += 1) await new Promise((r) => setTimeout(r, 10));
    procs[0]!.child.kill('SIGKILL');
    const statuses = await Promise.all(calls);
    expect(statuses.some((s) => s === 0)).toBe(true); // the kill did cut requests short
    // The survivor keeps serving.
    expect(await send(survivor, 1000)).toBe(200);

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
    const checks = await waitForInvariants(scope, { timeoutMs: 60_000, intervalMs: 500 });
    await ledger.stop();
    if (checks.some((x) => !x.ok)) {
      const r = await stores.db.pool.query(
        'select recorded, status, count(*)::int from job_results group by 1, 2',
      );
      process.stderr.write(`DEBUG ${JSON.stringify(r.rows)}\n${procs[1]!.lines.slice(-40).join('\n')}\n`);
    }
    expect(checks.filter((x) => !x.ok)).toEqual([]);
    // Every answered job succeeded and was charged once (the invariants count settlements per job).
    const answered = statuses.filter((s) => s === 200).length;
    const succeeded = await stores.db.pool.query<{ n: number }>(
      `select count(*)::int as n from jobs where namespace_id = $1 and status = 'succeeded'`,
      [ns.id],
    );
    expect(succeeded.rows[0]!.n).toBeGreaterThanOrEqual(answered + 1);
  }, 180_000);
});
