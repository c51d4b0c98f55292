// `npm run bench -- trust`: spot checks at the default sampling rate (QC_SAMPLE_BASIS_POINTS 100 = 1%, 10% while a
// node is on probation, QC_SHADOW_BAN_FAILURES 2) on the real stores, with 20 simulated nodes in process: 3 cheat
// on 20% of their answers, 2 lie about their speed (heartbeat quality 1, latency 0, yet 40 ms per job), 15 honest.
// Consumer jobs run in waves until every cheat is shadow-banned (bounded: BENCH_TRUST_MAX_JOBS, default 60,000,
// and BENCH_TRUST_MAX_S, default 420 s). Prints the network's consumer jobs until each cheat's ban (p50/max; a
// cheat is caught on its own jobs and as the blind node of others' checks), the
// share of consumer jobs cheats served before their ban (bound: their share of capacity, 3/20), honest nodes
// banned (target 0), the liars' traffic beside their fair share, and the CPU the comparisons cost per 1,000
// jobs beside the whole process's CPU per 1,000 jobs in the same run (ratio = their quotient).
import { createPgTestSchema } from '../test/harness.js';
import { createRedisTestSpace } from '../test/redis-harness.js';
import { createAmqpTestVhost } from '../test/amqp-harness.js';
import { createMongoTestDb } from '../test/mongo-harness.js';
import { createNamespaces } from '../test/factories.js';
import { randomAddress } from '../test/live-harness.js';
import { detectionBound, promptOf, startTrustNetwork, type SimNode } from '../test/trust-harness.js';
import { benchLine, round } from './stats.js';

const MAX_JOBS = Number(process.env.BENCH_TRUST_MAX_JOBS ?? 60_000);
const MAX_S = Number(process.env.BENCH_TRUST_MAX_S ?? 420);
const WAVE = 120;
const SAMPLE_BP = 100;
const PROBATION_BP = 1_000;
const WRONG = 0.2;

const out = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function main(): Promise<void> {
  const [db, space, vhost, mongo] = await Promise.all([
    createPgTestSchema({ poolSize: 12 }),
    createRedisTestSpace('bench-trust'),
    createAmqpTestVhost(),
    createMongoTestDb(),
  ]);
  const cheats = Array.from({ length: 3 }, () => randomAddress());
  const liars = Array.from({ length: 2 }, () => randomAddress());
  const honest = Array.from({ length: 15 }, () => randomAddress());
  const nodes: SimNode[] = [
    ...cheats.map((address) => ({ address, wrongShare: WRONG })),
    ...liars.map((address) => ({ address, delayMs: 40, claims: { quality: 1, latencyMs: 0 } })),
    ...honest.map((address) => ({ address })),
  ];
  const net = await startTrustNetwork({
    pool: db.pool,
    redis: space.redis,
    prefix: space.prefix,
    amqpUrl: vhost.url,
    mongo: mongo.store,
    nodes,
    sampleBasisPoints: SAMPLE_BP,
    probationSampleBasisPoints: PROBATION_BP,
    shadowBanFailures: 2,
    seed: 16,
  });
  try {
    const [ns] = await createNamespaces(db.pool, 1);
    await net.ledger.topUp(ns!.id, 10n ** 14n, 'bench');
    const served = new Map<string, number>(nodes.map((n) => [n.address, 0]));
    const bannedAt = new Map<string, number>();
    let cheatServedBeforeBan = 0;
    let jobs = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let lastReport = t0;
    while (bannedAt.size < cheats.length && jobs < MAX_JOBS && performance.now() - t0 < MAX_S * 1000) {
      const wave = await Promise.all(
        Array.from({ length: WAVE }, (_, k) => net.submit(ns!.id, promptOf(jobs + k))),
      );
      const ids = wave.map((w) => w.jobId);
      for (;;) {
        const r = await db.pool.query<{ n: number }>(
          `select count(*)::int as n from jobs where id = any($1::uuid[]) and status in ('succeeded', 'failed')`,
          [ids],
        );
        if (r.rows[0]!.n === ids.length) break;
        await sleep(20);
      }
      jobs += ids.length;
      for (const id of ids) {
        const node = net.deliveries.get(id)?.node;
        if (!node) continue;
        served.set(node, served.get(node)! + 1);
        if (cheats.includes(node) && !bannedAt.has(node)) cheatServedBeforeBan += 1;
      }
      const flags = await db.pool.query<{ node_address: string }>(
        `select node_address from node_flags where flag = 'shadow_ban' and node_address = any($1::text[])`,
        [cheats],
      );
      for (const { node_address } of flags.rows)
        if (!bannedAt.has(node_address)) bannedAt.set(node_address, jobs);
      if (performance.now() - lastReport > 10_000) {
        lastReport = performance.now();
        out(
          `  ${jobs} jobs, ${bannedAt.size}/${cheats.length} cheats banned, ${net.spotChecks.stats.settled} checks`,
        );
      }
    }
    await net.spotChecks.drain(10_000);
    const cpu = process.cpuUsage(cpu0);
    const elapsedS = (performance.now() - t0) / 1000;
    const honestBanned = (
      await db.pool.query<{ n: number }>(
        `select count(*)::int as n from node_flags where flag = 'shadow_ban' and node_address = any($1::text[])`,
        [[...honest, ...liars]],
      )
    ).rows[0]!.n;
    // Not banned within the run: counted at the run's length (so p50/max are lower bounds then, and said so).
    const undetected = cheats.filter((c) => !bannedAt.has(c)).length;
    const detect = cheats.map((c) => bannedAt.get(c) ?? jobs).sort((a, b) => a - b);
    const p50 = detect[1]!;
    const max = detect[2]!;
    const cheatShare = cheatServedBeforeBan / jobs;
    const liarShare = liars.reduce((s, l) => s + served.get(l)!, 0) / jobs;
    const verifyPer1k = (net.spotChecks.stats.compareMs / jobs) * 1000;
    const processPer1k = ((cpu.user + cpu.system) / 1000 / jobs) * 1000;
    const bound = detectionBound(SAMPLE_BP / 10_000, WRONG, 2);
    out(
      `trust: ${nodes.length} nodes (3 cheat at ${WRONG * 100}% of answers, 2 lie about speed), ${jobs} consumer jobs in ${round(elapsedS, 1)} s`,
    );
    out(
      `  checks: ${net.spotChecks.stats.sampled} sampled, ${net.spotChecks.stats.settled} settled, ${net.spotChecks.stats.skipped} skipped`,
    );
    out(
      `  network jobs until each cheat's ban: ${detect.join(', ')}${undetected ? ` (${undetected} not banned within the run)` : ''}`,
    );
    out(
      `  consumer jobs each cheat served before its ban: ${cheats.map((c) => served.get(c)).join(', ')}; bound on them (P ≤ 1e-6, checks of its own jobs alone): ${bound}`,
    );
    out(
      `  cheat_share ${round(cheatShare, 4)} (bound: their share of capacity, ${3 / 20}); honest nodes banned: ${honestBanned}`,
    );
    out(`  liars served ${round(liarShare, 4)} of jobs (fair share ${2 / 20})`);
    out(
      `  verification CPU ${round(verifyPer1k, 3)} ms / 1k jobs beside the process's ${round(processPer1k, 1)} ms / 1k jobs`,
    );
    out(
      benchLine('trust', {
        detect_jobs_p50: p50,
        detect_jobs_max: max,
        cheat_share: round(cheatShare, 4),
        honest_banned: honestBanned,
        verify_cpu_ms_per_1k: round(verifyPer1k, 3),
        undetected,
        ratio: round(verifyPer1k / processPer1k, 5),
      }),
    );
  } finally {
    await net.stop();
    await Promise.allSettled([db.drop(), space.drop(), vhost.drop(), mongo.drop()]);
  }
}
