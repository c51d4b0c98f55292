// `npm run bench -- live`: live node state in Redis with 100,000 registered nodes across 50 models.
// Heartbeats ingested per second and select-and-lease throughput and latency (p50/p99 at 1,000/s),
// each beside the raw ceilings measured in the same run (pipelined EVALSHA of a trivial script,
// pipelined SET). Cleans its keys and its PostgreSQL schema.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  createNodesModule,
  type Heartbeat,
  type JobRequirements,
  type Lease,
} from '../src/modules/nodes/index.js';
import { baseConfig, createPgTestSchema, testLog, uniqueName } from '../test/harness.js';
import { heartbeat, randomAddress, registerNodes } from '../test/live-harness.js';
import { deleteByPrefix } from '../test/redis-harness.js';
import { benchLine, round, summarize } from './stats.js';

const NODES = Number(process.env.BENCH_LIVE_NODES ?? 100_000);
const MODELS = 50;
const REGIONS = ['eu', 'us', 'ap', 'sa', 'af'];
const BATCH = 1_000;

const out = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `batches` pipelines of BATCH commands, `inFlight` pipelines at a time; returns commands/s. */
async function pipelined(
  count: number,
  inFlight: number,
  fill: (p: ReturnType<Redis['pipeline']>, i: number) => void,
  redis: Redis,
) {
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const start = next;
      next += BATCH;
      const p = redis.pipeline();
      for (let i = start; i < Math.min(start + BATCH, count); i += 1) fill(p, i);
      await p.exec();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return count / ((performance.now() - t0) / 1000);
}

export async function main(): Promise<void> {
  const prefix = `${uniqueName('bench:live')}:`;
  const config = Object.freeze({
    ...baseConfig,
    REDIS_KEY_PREFIX: prefix,
    HEARTBEAT_TTL_MS: 300_000,
    LEASE_TTL_MS: 300_000,
  });
  const pg = await createPgTestSchema({ poolSize: 4 });
  const redis = new Redis(config.REDIS_URL, { enableAutoPipelining: true, maxRetriesPerRequest: 3 });
  const raw = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 3 });
  const nodes = createNodesModule({ config, pool: pg.pool, redis, log: testLog });
  try {
    out(`live: ${NODES} nodes, ${MODELS} models, ${REGIONS.length} regions, cells=${config.LIVE_CELLS}`);
    const fleet = Array.from({ length: NODES }, (_, i) => ({
      address: randomAddress(),
      model: `model-${i % MODELS}`,
      region: REGIONS[i % REGIONS.length]!,
      quality: 0.5 + (i % 50) / 100,
    }));
    await registerNodes(
      pg.pool,
      fleet.map((n) => ({ address: n.address, environment: 'mainnet' as const })),
    );
    const beat = (n: (typeof fleet)[number]): Heartbeat =>
      heartbeat(n.address, {
        region: n.region,
        capacity: 4,
        quality: n.quality,
        latencyMs: (50 + n.quality * 100) | 0,
        models: [
          { name: n.model, version: 'v1', active: true },
          { name: 'installed-only', version: 'v1', active: false },
        ],
      });
    const ingestAll = async (inFlight: number) => {
      let next = 0;
      const t0 = performance.now();
      const worker = async () => {
        while (next < fleet.length) {
          const slice = fleet.slice(next, (next += BATCH));
          const r = await nodes.presence.ingestMany(slice.map(beat));
          if (r.some((x) => x.kind !== 'ok')) throw new Error('a heartbeat was not accepted');
        }
      };
      await Promise.all(Array.from({ length: inFlight }, worker));
      return fleet.length / ((performance.now() - t0) / 1000);
    };

    // Registration round: every node hydrates from PostgreSQL (not the steady state).
    const joinRate = await ingestAll(4);
    out(`first heartbeats (hydrated from PostgreSQL): ${round(joinRate, 0)}/s`);

    // Raw ceilings, same run, same batch size and parallelism as the heartbeat path.
    const trivial = await raw.script('LOAD', 'return 1');
    const rawSet = await pipelined(200_000, 4, (p, i) => p.set(`${prefix}raw:${i % 10_000}`, 'x'), raw);
    const rawEval = await pipelined(200_000, 4, (p) => p.evalsha(trivial as string, 0), raw);
    out(
      `raw ceilings: pipelined SET ${round(rawSet, 0)}/s, pipelined EVALSHA (trivial) ${round(rawEval, 0)}/s`,
    );

    // Steady-state heartbeats: two full rounds over the fleet (parse, script, indexes).
    await raw.config('RESETSTAT');
    const hbRates = [await ingestAll(8), await ingestAll(8)];
    const evalStat = (await raw.info('commandstats'))
      .split('\n')
      .find((l) => l.startsWith('cmdstat_evalsha'));
    const evalUs = Number(/usec=(\d+)/.exec(evalStat ?? '')?.[1] ?? NaN);
    out(
      `heartbeat rounds kept Redis busy ${round(evalUs / 1000, 0)} ms for ${2 * fleet.length} heartbeats (${round(evalUs / (2 * fleet.length), 1)} µs each, server side)`,
    );
    const hbRate = Math.max(...hbRates);
    out(
      `heartbeats: ${round(hbRate, 0)}/s (rounds ${hbRates.map((r) => round(r, 0)).join(', ')}) = ${round(hbRate / rawEval, 3)} of EVALSHA`,
    );

    const req = (i: number): JobRequirements => ({
      jobId: randomUUID(),
      environment: 'mainnet',
      model: `model-${i % MODELS}`,
      region: i % 3 === 0 ? undefined : REGIONS[i % REGIONS.length],
    });
    const leases: Lease[] = [];

    // Latency at a paced 1,000 selections/s for 5 s.
    const lat: number[] = [];
    const paced: Promise<void>[] = [];
    const t0 = performance.now();
    for (let i = 0; i < 5_000; i += 1) {
      const due = t0 + i; // one per ms
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      paced.push(
        (async () => {
          const s = performance.now();
          const l = await nodes.matchmaking.selectAndLease(req(i));
          lat.push(performance.now() - s);
          if (!l) throw new Error('no node for a paced selection');
          leases.push(l);
        })(),
      );
    }
    await Promise.all(paced);
    const pacedS = (performance.now() - t0) / 1000;
    const s = summarize(lat);
    out(
      `select-and-lease at 1,000/s: achieved ${round(5_000 / pacedS, 0)}/s, p50 ${round(s.p50, 3)} ms, p99 ${round(s.p99, 3)} ms, max ${round(s.max, 2)} ms`,
    );

    // Sustained throughput: 64 callers in a closed loop for 3 s.
    await raw.config('RESETSTAT');
    let done = 0;
    const tEnd = performance.now() + 3_000;
    const tThr = performance.now();
    await Promise.all(
      Array.from({ length: 64 }, async (_, w) => {
        for (let i = w; performance.now() < tEnd && i < 1_000_000; i += 64) {
          const l = await nodes.matchmaking.selectAndLease(req(i));
          if (!l) throw new Error('no node for a selection');
          leases.push(l);
          done += 1;
        }
      }),
    );
    const selStat = (await raw.info('commandstats')).split('\n').find((l) => l.startsWith('cmdstat_evalsha'));
    const selUs = Number(/usec_per_call=([\d.]+)/.exec(selStat ?? '')?.[1] ?? NaN);
    const leaseRate = done / ((performance.now() - tThr) / 1000);
    out(
      `select-and-lease sustained: ${round(leaseRate, 0)}/s (64 callers) = ${round(leaseRate / rawEval, 3)} of EVALSHA; ${round(selUs, 1)} µs each, server side`,
    );

    const tRel = performance.now();
    for (let i = 0; i < leases.length; i += BATCH)
      await Promise.all(leases.slice(i, i + BATCH).map((l) => nodes.matchmaking.complete(l, 'ok')));
    out(
      `releases: ${round(leases.length / ((performance.now() - tRel) / 1000), 0)}/s (${leases.length} leases)`,
    );

    out(
      benchLine('live', {
        heartbeats_per_s: round(hbRate, 0),
        raw_evalsha_per_s: round(rawEval, 0),
        ratio: round(hbRate / rawEval, 3),
        lease_per_s: round(leaseRate, 0),
        lease_p99_ms: round(s.p99, 3),
      }),
    );
  } finally {
    await deleteByPrefix(raw, prefix);
    redis.disconnect();
    raw.disconnect();
    await pg.drop();
  }
}
