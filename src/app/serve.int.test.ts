// A backbone process's graceful stop: new work is refused, in-flight jobs finish (and settle) before the stores
// close, and a second stop is a no-op; a dispatch waiting for capacity hands its delivery back unspent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import { heartbeat, openSessions, randomAddress } from '../../test/live-harness.js';
import { createNamespaces } from '../../test/factories.js';
import type { NodeExecutor } from '../modules/jobs/index.js';
import type { Backbone } from './compose.js';
import { waitTerminal } from '../../test/gateway-harness.js';
import { scanKeys } from '../stores/redis/client.js';

let stores: TestStores;
beforeAll(async () => {
  stores = await createTestStores();
});
afterAll(async () => {
  await stores?.drop();
});

/** A funded namespace, one online node serving llama3-8b, and one job submitted for it. */
async function submitToOneNode(b: Backbone): Promise<{ jobId: string; namespaceId: string }> {
  const [ns] = await createNamespaces(b.pool, 1);
  await b.ledger.topUp(ns!.id, 1_000_000n, `seed-${ns!.id}`);
  const address = randomAddress();
  await b.nodes.admin.registerNode({ address, environment: 'testnet' });
  await openSessions(b.nodes, [{ address, environment: 'testnet' }]);
  await b.nodes.presence.ingest(heartbeat(address, { environment: 'testnet', capacity: 4 }));
  const { jobId } = await b.jobs.submit({
    namespaceId: ns!.id,
    model: 'llama3-8b',
    environment: 'testnet',
    priority: 'urgent',
    maxTokens: 10,
    ttlMs: 60_000,
  });
  return { jobId, namespaceId: ns!.id };
}

describe('graceful stop', () => {
  it('drains the job running on a node: it settles before the process closes its stores', async () => {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const executor: NodeExecutor = {
      async run() {
        started();
        await new Promise((r) => setTimeout(r, 800));
        return { tokensIn: 2, tokensOut: 3, output: 'finished during shutdown' };
      },
    };
    const server = await startTestServer(stores, { roles: 'cloud,io', executor });
    const { jobId } = await submitToOneNode(server.backbone);
    await running;
    await server.stop();
    await server.stop(); // idempotent
    const r = await stores.db.pool.query<{ status: string; cost: string }>(
      'select status, cost::text from jobs where id = $1',
      [jobId],
    );
    expect(r.rows[0]).toEqual({
      status: 'succeeded',
      cost: String(5 * stores.config().PRICE_PER_TOKEN_MICRO),
    });
    const settles = await stores.db.pool.query<{ n: number }>(
      `select count(*)::int as n from ledger_entries where kind = 'settle' and job_id = $1`,
      [jobId],
    );
    expect(settles.rows[0]!.n).toBe(1);
    // The HTTP port no longer answers.
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  });

  it('a duplicated job message while the job runs in this process is acknowledged: one run, one settlement', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let runs = 0;
    const executor: NodeExecutor = {
      async run() {
        runs += 1;
        await gate;
        return { tokensIn: 1, tokensOut: 1, output: 'once' };
      },
    };
    const server = await startTestServer(stores, { roles: 'cloud,io', executor });
    try {
      const b = server.backbone;
      const { jobId, namespaceId } = await submitToOneNode(b);
      for (let i = 0; i < 100 && runs === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(runs).toBe(1);
      // The same job enqueued again (as a retry copy racing a redelivery would).
      await b.routing.submit({
        v: 1,
        jobId,
        namespaceId,
        model: 'llama3-8b',
        environment: 'testnet',
        priority: 'urgent',
        subcloud: null,
        attempt: 0,
        excludedNodeIds: [],
        failures: [],
        enqueuedAt: new Date().toISOString(),
        ttlMs: 60_000,
      });
      await new Promise((r) => setTimeout(r, 500)); // the duplicate is consumed while the first still runs
      release();
      expect(await waitTerminal(b, namespaceId, jobId)).toBe('succeeded');
      expect(runs).toBe(1);
      const settles = await b.pool.query<{ n: number }>(
        `select count(*)::int as n from ledger_entries where kind = 'settle' and job_id = $1`,
        [jobId],
      );
      expect(settles.rows[0]!.n).toBe(1);
      const leases = await scanKeys(b.redis, `${b.config.REDIS_KEY_PREFIX}live:*lease:${jobId}`);
      expect(leases).toEqual([]);
    } finally {
      release();
      await server.stop();
    }
  });

  it('a dispatch waiting for capacity when its process stops hands the delivery back: no attempt spent, no node blamed', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const ran: string[] = [];
    const slow: NodeExecutor = {
      async run(_lease, job) {
        ran.push(job.jobId);
        await gate;
        return { tokensIn: 1, tokensOut: 1, output: 'first' };
      },
    };
    const overrides = { JOB_CAPACITY_WAIT_MS: 60_000 };
    const a = await startTestServer(stores, { roles: 'cloud,io', executor: slow, overrides });
    const b = a.backbone;
    const [ns] = await createNamespaces(b.pool, 1);
    await b.ledger.topUp(ns!.id, 1_000_000n, `seed-${ns!.id}`);
    const address = randomAddress();
    await b.nodes.admin.registerNode({ address, environment: 'testnet' });
    // One slot, and a model of its own (the other tests' nodes do not serve it): the second job waits for it.
    const models = [{ name: 'handback-8b', version: 'v1', active: true }];
    await openSessions(b.nodes, [{ address, environment: 'testnet' }]);
    await b.nodes.presence.ingest(heartbeat(address, { environment: 'testnet', capacity: 1, models }));
    const submit = () =>
      b.jobs.submit({
        namespaceId: ns!.id,
        model: 'handback-8b',
        environment: 'testnet',
        priority: 'urgent',
        maxTokens: 10,
        ttlMs: 120_000,
      });
    const first = await submit();
    for (let i = 0; i < 200 && ran.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(ran).toEqual([first.jobId]);
    const second = await submit();
    await new Promise((r) => setTimeout(r, 500)); // consumed, and waiting for the busy node
    expect(ran).toEqual([first.jobId]);
    const stopping = a.stop();
    await new Promise((r) => setTimeout(r, 300));
    release(); // the running job finishes during the drain
    await stopping;
    expect(ran).toEqual([first.jobId]); // the waiting job never reached a node here

    // Another process takes the handed-back delivery and runs it as its first attempt.
    const fast: NodeExecutor = { run: async () => ({ tokensIn: 1, tokensOut: 2, output: 'second' }) };
    const c = await startTestServer(stores, { roles: 'cloud,io', executor: fast });
    try {
      await openSessions(c.backbone.nodes, [{ address, environment: 'testnet' }]);
      await c.backbone.nodes.presence.ingest(
        heartbeat(address, { environment: 'testnet', capacity: 1, models }),
      );
      expect(await waitTerminal(c.backbone, ns!.id, second.jobId)).toBe('succeeded');
      expect(await waitTerminal(c.backbone, ns!.id, first.jobId)).toBe('succeeded');
      const r = await stores.db.pool.query<{ attempts: number }>('select attempts from jobs where id = $1', [
        second.jobId,
      ]);
      expect(r.rows[0]!.attempts).toBe(1);
      const flags = await stores.db.pool.query('select flag from node_flags where node_address = $1', [
        address,
      ]);
      expect(flags.rows).toEqual([]);
    } finally {
      await c.stop();
    }
  });
});
