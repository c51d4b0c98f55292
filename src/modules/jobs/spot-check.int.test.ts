// Spot-check verification in the job flow, on the real stores (PostgreSQL ledger, verdicts and audit log, Redis
// live state, RabbitMQ routing, MongoDB QC results), with simulated nodes running the built-in runtime (some with
// its cheat knob): blind copies off the consumer's path and paid by the network; a cheat detected within a
// bound computed from the sampling rate, shadow-banned, its held-back earnings forfeited and its consumers
// refunded; honest nodes never banned; a replayed verdict changes nothing.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createRedisTestSpace, type RedisTestSpace } from '../../../test/redis-harness.js';
import { createAmqpTestVhost, type AmqpTestVhost } from '../../../test/amqp-harness.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { randomAddress } from '../../../test/live-harness.js';
import { waitFor } from '../../../test/routing-fixtures.js';
import {
  detectionBound,
  promptOf,
  startTrustNetwork,
  type TrustNetwork,
} from '../../../test/trust-harness.js';
import { checkInvariants } from '../../cli/invariants.js';
import { AuditService } from '../audit/index.js';
import { QcChecksRepository } from './qc-checks.repository.js';

let db: PgTestSchema;
let space: RedisTestSpace;
let vhost: AmqpTestVhost;
let mongo: MongoTestDb;

beforeAll(async () => {
  [db, space, vhost, mongo] = await Promise.all([
    createPgTestSchema({ poolSize: 12 }),
    createRedisTestSpace('qc'),
    createAmqpTestVhost(),
    createMongoTestDb(),
  ]);
});
afterAll(async () => {
  await Promise.all([db?.drop(), space?.drop(), vhost?.drop(), mongo?.drop()]);
});
// A network left running by a failed test would consume the next test's jobs (same vhost and lanes).
const started: TrustNetwork[] = [];
afterEach(async () => {
  await Promise.allSettled(started.splice(0).map((n) => n.stop()));
});

const TOP_UP = 100_000_000n;

async function network(
  nodes: Array<{ address: string; wrongShare?: number }>,
  sampleBasisPoints: number,
  seed: number,
  prefix: string,
  shadowBanFailures = 2,
): Promise<TrustNetwork> {
  const net = await startTrustNetwork({
    pool: db.pool,
    redis: space.redis,
    prefix: `${space.prefix}${prefix}:`,
    amqpUrl: vhost.url,
    mongo: mongo.store,
    nodes,
    sampleBasisPoints,
    shadowBanFailures,
    seed,
  });
  started.push(net);
  return net;
}

/** Submits `n` jobs `wave` at a time, each wave waited to its end and its checks to their verdicts. */
async function runJobs(net: TrustNetwork, ns: string, from: number, n: number, wave = 8): Promise<string[]> {
  const ids: string[] = [];
  for (let i = from; i < from + n; i += wave) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(wave, from + n - i) }, (_, k) => net.submit(ns, promptOf(i + k))),
    );
    ids.push(...batch.map((b) => b.jobId));
    await waitFor(
      'wave terminal',
      async () => {
        const r = await db.pool.query<{ n: number }>(
          `select count(*)::int as n from jobs where id = any($1::uuid[]) and status in ('succeeded', 'failed')`,
          [batch.map((b) => b.jobId)],
        );
        return r.rows[0]!.n === batch.length;
      },
      20_000,
    );
    await net.spotChecks.drain(20_000);
  }
  return ids;
}

const sumOf = async (kind: string, where = 'true', args: unknown[] = []) =>
  BigInt(
    (
      await db.pool.query<{ s: string }>(
        `select coalesce(sum(amount), 0)::text as s from ledger_entries where kind = $1 and ${where}`,
        [kind, ...args],
      )
    ).rows[0]!.s,
  );

describe('spot checks in the job flow', () => {
  it('runs the blind copy after the consumer was answered, on another node, as an ordinary-looking job paid by the network', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const net = await network(
      Array.from({ length: 3 }, () => ({ address: randomAddress() })),
      10_000,
      1,
      'blind',
    );
    await net.ledger.topUp(ns!.id, TOP_UP, 'seed');
    const release = net.gateBlind();
    const job = await net.submit(ns!.id, 'the quick brown fox');
    // The blind copy is held at its node, yet the consumer's job is done: the check is not on its path.
    await waitFor('consumer job succeeded', async () => {
      const r = await db.pool.query(`select status from jobs where id = $1`, [job.jobId]);
      return r.rows[0]?.status === 'succeeded';
    });
    const qc = new QcChecksRepository();
    await waitFor('blind copy delivered', async () => net.deliveries.size === 2);
    expect(await qc.findVerdict(db.pool, job.jobId)).toBeUndefined();
    release();
    await net.spotChecks.drain(10_000);
    const verdict = await qc.findVerdict(db.pool, job.jobId);
    expect(verdict).toMatchObject({ verdict: 'agreed', rule: 'similarity', wrongNode: null, nodeC: null });
    const original = net.deliveries.get(job.jobId)!;
    const blind = net.deliveries.get(verdict!.blindJobId)!;
    expect(blind.node).not.toBe(original.node);
    // Same request, same pinned seed; a job id of the same shape: nothing tells the node it is a check.
    expect(blind.message.request).toEqual(original.message.request);
    expect(typeof original.message.request!.body.seed).toBe('number');
    expect(blind.message.jobId).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    // The network paid the blind node its share; the consumer paid only its own job.
    const settled = await sumOf('settle', 'job_id = $2', [job.jobId]);
    expect(
      await sumOf('network_expense', 'node_address = $2 and job_id = $3', [blind.node, verdict!.blindJobId]),
    ).toBe((settled * 80n) / 100n);
    expect((await net.ledger.getBalance(ns!.id))?.available).toBe(TOP_UP - settled);
    expect(await net.ledger.verifyLedger()).toEqual([]);
    await net.stop();
  });

  it('detects a node that answers wrongly within the bound, shadow-bans it, forfeits its held-back earnings, refunds its consumers; a replayed verdict changes nothing', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const cheat = randomAddress();
    const honest = Array.from({ length: 4 }, () => randomAddress());
    const s = 0.5;
    const w = 0.5;
    const net = await network(
      [...honest.map((address) => ({ address })), { address: cheat, wrongShare: w }],
      0,
      2,
      'cheat',
    );
    await net.ledger.topUp(ns!.id, TOP_UP, 'seed');
    // Unchecked first (80 jobs): the cheat earns (held back, 7 days) before any check can reverse or ban it.
    const warmup = await runJobs(net, ns!.id, 0, 80);
    expect(warmup.filter((id) => net.deliveries.get(id)?.node === cheat).length).toBeGreaterThan(0);
    expect(await sumOf('earning', 'node_address = $2', [cheat])).toBeGreaterThan(0n);
    net.setSampling(s * 10_000);
    const bound = detectionBound(s, w, 2);
    expect(bound).toBe(59); // s·w = 0.25, k = 2: P(fewer than 2 proven failures in 59 jobs) ≤ 1e-6
    const banned = async () =>
      (
        await db.pool.query(
          `select 1 from node_flags where node_address = $1 and flag = 'shadow_ban' and set_by = 'system:qc'`,
          [cheat],
        )
      ).rowCount === 1;
    const ran: string[] = [];
    for (let i = 100; !(await banned()) && i < 700; i += 8) ran.push(...(await runJobs(net, ns!.id, i, 8)));
    expect(await banned()).toBe(true);
    const cheatJobs = ran.filter((id) => net.deliveries.get(id)?.node === cheat).length;
    // Detected within the bound (plus the last wave, whose jobs may have run before the verdict landed).
    expect(cheatJobs).toBeLessThanOrEqual(bound + 8);

    // Shadow-banned: no consumer traffic any more.
    const after = await runJobs(net, ns!.id, 1_000, 40);
    expect(after.filter((id) => net.deliveries.get(id)?.node === cheat)).toEqual([]);

    // Its held-back earnings were forfeited; honest nodes were never found wrong.
    expect(await sumOf('forfeit', 'node_address = $2', [cheat])).toBeGreaterThan(0n);
    const wrong = await db.pool.query<{ wrong_node: string }>(
      `select distinct wrong_node from qc_checks where wrong_node is not null and namespace_id = $1`,
      [ns!.id],
    );
    expect(wrong.rows.map((r) => r.wrong_node)).toEqual([cheat]);

    // Each job the cheat was found wrong on was refunded its whole charge; its earning was reversed.
    const refunded = await db.pool.query<{ job_id: string }>(
      `select job_id from qc_checks where verdict = 'original_wrong' and namespace_id = $1`,
      [ns!.id],
    );
    // (Under load the cheat may be banned on blind copies alone before one of its own jobs is checked; the next
    // test makes that case certain.)
    for (const { job_id } of refunded.rows) {
      expect(net.deliveries.get(job_id)?.node).toBe(cheat);
      expect(await sumOf('refund', 'job_id = $2', [job_id])).toBe(
        await sumOf('settle', 'job_id = $2', [job_id]),
      );
      const reversals = await db.pool.query(
        `select 1 from ledger_entries where kind = 'earning_reversal' and job_id = $1 and node_address = $2`,
        [job_id, cheat],
      );
      expect(reversals.rowCount).toBe(1);
    }
    const balance = await net.ledger.getBalance(ns!.id);
    expect(balance?.reserved).toBe(0n);
    const nsWhere = 'namespace_id = $2';
    expect(balance?.available).toBe(
      TOP_UP - (await sumOf('settle', nsWhere, [ns!.id])) + (await sumOf('refund', nsWhere, [ns!.id])),
    );
    // Every failed check and the ban are in the hash-chained audit log, which verifies.
    const audit = new AuditService({ pool: db.pool, log: testLog });
    const failed = await db.pool.query<{ n: number }>(
      `select count(*)::int as n from qc_checks where verdict <> 'agreed' and namespace_id = $1`,
      [ns!.id],
    );
    const entries = await db.pool.query<{ action: string; n: number }>(
      `select action, count(*)::int as n from audit_log where actor = 'system:qc'
          and (target = $1 or target in (select job_id::text from qc_checks where namespace_id = $2))
        group by action`,
      [cheat, ns!.id],
    );
    const byAction = Object.fromEntries(entries.rows.map((r) => [r.action, r.n]));
    expect(byAction['qc.check_failed']).toBe(failed.rows[0]!.n);
    expect(byAction['node.shadow_ban']).toBeGreaterThanOrEqual(1);
    expect((await audit.verify()).problems).toEqual([]);
    expect(await net.ledger.verifyLedger()).toEqual([]);

    // Replaying a verdict (a duplicated outcome) changes nothing the second time.
    const failedRow = await db.pool.query<{ job_id: string }>(
      `select job_id from qc_checks where verdict <> 'agreed' and namespace_id = $1 limit 1`,
      [ns!.id],
    );
    const row = await new QcChecksRepository().findVerdict(db.pool, failedRow.rows[0]!.job_id);
    const count = async () =>
      (await db.pool.query<{ n: number }>(`select count(*)::int as n from ledger_entries`)).rows[0]!.n;
    const before = { entries: await count(), balance: await net.ledger.getBalance(ns!.id) };
    const again = await net.settler.settle({ ...row!, charged: 1n, payB: 5n, payC: 5n });
    expect(again).toEqual({ fresh: false, refunded: 0n, reversed: 0n, forfeited: 0n, shadowBanned: false });
    expect(await count()).toBe(before.entries);
    expect(await net.ledger.getBalance(ns!.id)).toEqual(before.balance);
    await net.stop();
    // Every DESIGN.md invariant still holds (the balance one counting refunds), job documents included.
    const checks = await checkInvariants({
      pool: db.pool,
      ledger: net.ledger,
      redis: space.redis,
      redisPrefix: `${space.prefix}cheat:`,
      namespaceIds: [ns!.id],
      mongo: mongo.store.db,
    });
    expect(checks.filter((c) => !c.ok)).toEqual([]);
  });

  it('refunds the consumer of a job its node was found wrong on, reverses the earning, records the QC result', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const cheat = randomAddress();
    // Always wrong, every job checked, no ban (a high threshold): each job the cheat runs is found wrong.
    const net = await network(
      [{ address: cheat, wrongShare: 1 }, { address: randomAddress() }, { address: randomAddress() }],
      10_000,
      5,
      'refund',
      1_000,
    );
    await net.ledger.topUp(ns!.id, TOP_UP, 'seed');
    const ids: string[] = [];
    // Its score falls at its first failed check, so it gets few jobs after: bounded at 200 jobs.
    for (let i = 0; i < 200 && !ids.some((id) => net.deliveries.get(id)?.node === cheat); i += 6)
      ids.push(...(await runJobs(net, ns!.id, i, 6, 6)));
    const mine = ids.filter((id) => net.deliveries.get(id)?.node === cheat);
    expect(mine.length).toBeGreaterThan(0);
    for (const jobId of mine) {
      const v = await new QcChecksRepository().findVerdict(db.pool, jobId);
      expect(v).toMatchObject({ verdict: 'original_wrong', wrongNode: cheat });
      const charge = await sumOf('settle', 'job_id = $2', [jobId]);
      expect(charge).toBeGreaterThan(0n);
      expect(await sumOf('refund', 'job_id = $2 and namespace_id = $3', [jobId, ns!.id])).toBe(charge);
      expect(await sumOf('earning_reversal', 'job_id = $2 and node_address = $3', [jobId, cheat])).toBe(
        await sumOf('earning', 'job_id = $2', [jobId]),
      );
      // The QC result documents are in MongoDB: the cheat's says fail, the others pass.
      const docs = await net.recordsRepo.findQcResults(ns!.id, jobId, new Date(0));
      expect(docs.map((d) => [d.node === cheat, d.verdict]).sort()).toEqual([
        [false, 'pass'],
        [false, 'pass'],
        [true, 'fail'],
      ]);
    }
    const nsWhere = 'namespace_id = $2';
    expect((await net.ledger.getBalance(ns!.id))?.available).toBe(
      TOP_UP - (await sumOf('settle', nsWhere, [ns!.id])) + (await sumOf('refund', nsWhere, [ns!.id])),
    );
    expect(await net.ledger.verifyLedger()).toEqual([]);
  });

  it('never shadow-bans an honest node in a long run with honest peers (at least 150 checks, at most 600 jobs)', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const nodes = Array.from({ length: 5 }, () => ({ address: randomAddress() }));
    const net = await network(nodes, 5_000, 3, 'honest');
    await net.ledger.topUp(ns!.id, TOP_UP, 'seed');
    // Half the jobs sampled; a check with no free independent node is skipped, so run until 150 were settled.
    for (let i = 0; net.spotChecks.stats.settled < 150 && i < 600; i += 50)
      await runJobs(net, ns!.id, i, 50, 10);
    const verdicts = await db.pool.query<{ verdict: string; n: number }>(
      `select verdict, count(*)::int as n from qc_checks where node_a = any($1::text[]) group by verdict`,
      [nodes.map((n) => n.address)],
    );
    const agreed = verdicts.rows.find((r) => r.verdict === 'agreed')?.n ?? 0;
    expect(verdicts.rows.filter((r) => r.verdict !== 'agreed')).toEqual([]);
    expect(agreed, JSON.stringify(net.spotChecks.stats)).toBeGreaterThanOrEqual(150);
    const flags = await db.pool.query(`select 1 from node_flags where node_address = any($1::text[])`, [
      nodes.map((n) => n.address),
    ]);
    expect(flags.rowCount).toBe(0);
    expect(await net.ledger.verifyLedger()).toEqual([]);
    await net.stop();
  });

  it('two verdicts against one node settled at once both count: the second failure bans it', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const nodes = Array.from({ length: 3 }, () => ({ address: randomAddress() }));
    const net = await network(nodes, 0, 4, 'race');
    const [a, b] = nodes.map((n) => n.address);
    const verdict = (jobId: string) => ({
      jobId,
      namespaceId: ns!.id,
      model: 'llama3-8b',
      environment: 'testnet' as const,
      rule: 'similarity' as const,
      verdict: 'blind_wrong' as const,
      nodeA: a!,
      nodeB: b!,
      nodeC: null,
      blindJobId: crypto.randomUUID(),
      tieJobId: null,
      wrongNode: b!,
      similarity: 0,
      charged: 0n,
      payB: 10n,
      payC: 0n,
    });
    const settled = await Promise.all([
      net.settler.settle(verdict(crypto.randomUUID())),
      net.settler.settle(verdict(crypto.randomUUID())),
    ]);
    expect(settled.map((x) => x.fresh)).toEqual([true, true]);
    expect(settled.filter((x) => x.shadowBanned)).toHaveLength(1);
    const flag = await db.pool.query(
      `select 1 from node_flags where node_address = $1 and flag = 'shadow_ban'`,
      [b],
    );
    expect(flag.rowCount).toBe(1);
    // A blind node found wrong is not paid for its copy.
    expect(await sumOf('network_expense', 'node_address = $2', [b])).toBe(0n);
    expect(await net.ledger.verifyLedger()).toEqual([]);
    await net.stop();
  });
});
