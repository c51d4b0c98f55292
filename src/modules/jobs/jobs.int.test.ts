// The job flow on the real stores (PostgreSQL ledger and job rows, Redis live state, RabbitMQ routing), with
// simulated nodes in process: a mixed run with failing nodes, then the DESIGN.md invariants checked.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createRedisTestSpace, type RedisTestSpace } from '../../../test/redis-harness.js';
import { createAmqpTestVhost, type AmqpTestVhost } from '../../../test/amqp-harness.js';
import {
  buildNodes,
  heartbeat,
  openSessions,
  liveConfig,
  randomAddress,
  registerNodes,
} from '../../../test/live-harness.js';
import { routingOptionsFor, sleep, waitFor } from '../../../test/routing-fixtures.js';
import { LedgerService } from '../credits/index.js';
import type { Lease, NodesModule } from '../nodes/index.js';
import { RoutingService, type JobMessage } from '../routing/index.js';
import { JobsService, type NodeExecutor } from './index.js';
import { scanKeys } from '../../stores/redis/client.js';

let db: PgTestSchema;
let space: RedisTestSpace;
let vhost: AmqpTestVhost;

beforeAll(async () => {
  [db, space, vhost] = await Promise.all([
    createPgTestSchema({ poolSize: 10 }),
    createRedisTestSpace('jobs'),
    createAmqpTestVhost(),
  ]);
});
afterAll(async () => {
  await Promise.all([db?.drop(), space?.drop(), vhost?.drop()]);
});

describe('job flow across the four stores', () => {
  it('every job ends in exactly one terminal state; credits balance; failing nodes are retried elsewhere; no lease is left', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = new LedgerService({
      pool: db.pool,
      log: testLog,
      options: { batchMaxWaitMs: 2, batchMaxSize: 200, batchConcurrency: 4, holdTimeoutMs: 60_000 },
    });
    await ledger.topUp(ns!.id, 10_000_000n, 'seed');
    const config = liveConfig(space.prefix, { HEARTBEAT_TTL_MS: 30_000, LEASE_TTL_MS: 30_000 });
    const nodes: NodesModule = buildNodes(db.pool, space.redis, config);
    const good = [randomAddress(), randomAddress()];
    const broken = randomAddress();
    await registerNodes(
      db.pool,
      [...good, broken].map((address) => ({ address, environment: 'testnet' as const })),
    );
    for (const address of [...good, broken]) {
      await openSessions(nodes, [{ address, environment: 'testnet' }]);
      await nodes.presence.ingest(
        heartbeat(address, {
          environment: 'testnet',
          models: [{ name: 'llama3-8b', version: 'v1', active: true }],
          capacity: 4,
          quality: address === broken ? 1 : 0.5,
        }),
      );
    }
    const runs = new Map<string, string[]>();
    const executor: NodeExecutor = {
      async run(lease: Lease, job: JobMessage) {
        const node = lease.nodeAddress;
        runs.set(job.jobId, [...(runs.get(job.jobId) ?? []), node]);
        await new Promise((r) => setTimeout(r, 5));
        if (node === broken) throw new Error('GPU fell off the bus');
        return { tokensIn: 10, tokensOut: 20, output: 'ok' };
      },
    };
    const routing = new RoutingService({
      pool: db.pool,
      log: testLog,
      options: routingOptionsFor(vhost.url, { ROUTING_RETRY_DELAYS_MS: '50,100', ROUTING_MAX_ATTEMPTS: 3 }),
    });
    await routing.start();
    const jobs = new JobsService({
      pool: db.pool,
      ledger,
      routing,
      matchmaking: nodes.matchmaking,
      executor,
      log: testLog,
      options: { pricePerTokenMicro: 100n, nodeSharePercent: 80n, maxAttempts: 3, jobTimeoutMs: 5_000 },
    });
    const consumer = await routing.startConsumer({
      serves: [{ environment: 'testnet', model: 'llama3-8b' }],
      handler: jobs.handle,
      onExpired: jobs.onExpired,
    });

    const submitted = await Promise.all(
      Array.from({ length: 40 }, () =>
        jobs.submit({
          namespaceId: ns!.id,
          model: 'llama3-8b',
          environment: 'testnet',
          priority: 'bulk',
          maxTokens: 100,
          ttlMs: 60_000,
        }),
      ),
    );
    // A job for a model nobody serves: it expires (TTL) and is refunded. Its lane's consumer starts only once
    // the TTL has passed (submit resolves after the publish, so enqueuedAt + ttl is behind us): it must find the
    // job expired and never run it. Started at once, it could run the job within the TTL, and its handler's
    // three failed attempts (retry delays 50 + 100 ms) would quarantine it before it expired.
    const orphanTtlMs = 300;
    const orphan = await jobs.submit({
      namespaceId: ns!.id,
      model: 'nobody-serves-this',
      environment: 'testnet',
      priority: 'bulk',
      maxTokens: 100,
      ttlMs: orphanTtlMs,
    });
    await sleep(orphanTtlMs + 20);
    let orphanRuns = 0;
    const expiryConsumer = await routing.startConsumer({
      serves: [{ environment: 'testnet', model: 'nobody-serves-this' }],
      handler: async () => {
        orphanRuns += 1;
        return { kind: 'failed', reason: 'unreachable: no node serves it' };
      },
      onExpired: jobs.onExpired,
      concurrency: 1,
      lanePrefetch: 1,
    });

    await waitFor(
      'every job terminal',
      async () => {
        const c = await jobs.statusCounts(ns!.id);
        return (c.succeeded ?? 0) + (c.failed ?? 0) + (c.expired ?? 0) === 41;
      },
      60_000,
    );
    const counts = await jobs.statusCounts(ns!.id);
    expect(counts).toEqual({ succeeded: 40, expired: 1 });

    // Jobs first tried on the broken node were retried on a good one; none ran on two nodes successfully.
    const retried = submitted.filter((s) => (runs.get(s.jobId) ?? []).includes(broken));
    expect(retried.length).toBeGreaterThan(0);
    for (const s of retried) expect(good).toContain(runs.get(s.jobId)!.at(-1));
    expect(runs.has(orphan.jobId)).toBe(false);
    expect(orphanRuns).toBe(0);

    // Exactly one settlement per job, none for the expired one; reserved = 0; the ledger verifies.
    const settles = await db.pool.query<{ job_id: string; n: number }>(
      `select job_id, count(*)::int as n from ledger_entries where kind = 'settle' group by job_id`,
    );
    expect(settles.rows).toHaveLength(40);
    expect(settles.rows.every((r) => r.n === 1)).toBe(true);
    const voids = await db.pool.query(
      `select count(*)::int as n from ledger_entries where kind = 'void' and job_id = $1`,
      [orphan.jobId],
    );
    expect(voids.rows[0].n).toBe(1);
    const balance = await ledger.getBalance(ns!.id);
    expect(balance?.reserved).toBe(0n);
    expect(balance?.available).toBe(10_000_000n - 40n * 30n * 100n);
    expect(await ledger.verifyLedger()).toEqual([]);
    const earned = await db.pool.query<{ s: string }>(
      `select coalesce(sum(earned), 0)::text as s from node_balances`,
    );
    expect(earned.rows[0]!.s).toBe(String((40n * 3000n * 80n) / 100n));
    const leaseKeys = await scanKeys(space.redis, `${space.prefix}*lease:*`);
    expect(leaseKeys).toEqual([]);

    await consumer.stop();
    await expiryConsumer.stop();
    await routing.stop();
    await ledger.stop();
  });
});
