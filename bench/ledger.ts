// Ledger benchmark: reserve+settle pairs per second with group commit, spread over 1,000 namespaces and on one
// hot namespace, beside the raw PostgreSQL ceiling (SELECT … FOR UPDATE + UPDATE + INSERT per transaction,
// pool of 8) measured in the same run.
import { randomUUID } from 'node:crypto';
import { LedgerService, type LedgerOptions } from '../src/modules/credits/index.js';
import { createPgTestSchema, testLog } from '../test/harness.js';
import { createNamespacesBulk } from '../test/factories.js';
import { createPgPool, type Pool } from '../src/stores/postgres/pool.js';
import { benchLine, round, summarize } from './stats.js';

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 6_000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 64);
const NAMESPACES = 1_000;

/** Closed loop: `clients` workers run `op` until the deadline; returns ops/s and per-op latencies. */
async function closedLoop(
  clients: number,
  durationMs: number,
  op: (worker: number) => Promise<number>,
): Promise<{ perS: number; latencies: number[] }> {
  const latencies: number[] = [];
  let done = 0;
  const deadline = performance.now() + durationMs;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, w) => {
      while (performance.now() < deadline) {
        latencies.push(await op(w));
        done += 1;
      }
    }),
  );
  return { perS: done / ((performance.now() - t0) / 1000), latencies };
}

async function rawCeiling(pool: Pool, namespaces: string[]): Promise<number> {
  await pool.query('create table raw_accounts (id uuid primary key, balance bigint not null)');
  await pool.query(
    'create table raw_entries (id bigint generated always as identity primary key, account uuid not null, amount bigint not null)',
  );
  await pool.query('insert into raw_accounts select unnest($1::uuid[]), 1000000000000', [namespaces]);
  let i = 0;
  const r = await closedLoop(8, DURATION_MS, async () => {
    const id = namespaces[i++ % namespaces.length]!;
    const t = performance.now();
    const c = await pool.connect();
    try {
      await c.query('begin');
      await c.query('select balance from raw_accounts where id = $1 for update', [id]);
      await c.query('update raw_accounts set balance = balance - 1 where id = $1', [id]);
      await c.query('insert into raw_entries (account, amount) values ($1, 1)', [id]);
      await c.query('commit');
    } finally {
      c.release();
    }
    return performance.now() - t;
  });
  return r.perS;
}

async function pairs(
  ledger: LedgerService,
  pick: (w: number, i: number) => string,
): Promise<{ pairsPerS: number; reserveLatencies: number[] }> {
  const reserveLatencies: number[] = [];
  let i = 0;
  const r = await closedLoop(CLIENTS, DURATION_MS, async (w) => {
    const ns = pick(w, i++);
    const job = randomUUID();
    const t = performance.now();
    await ledger.reserve(ns, job, 1_000n);
    reserveLatencies.push(performance.now() - t);
    await ledger.settle(ns, job, 600n);
    return performance.now() - t;
  });
  return { pairsPerS: r.perS, reserveLatencies };
}

export async function main(): Promise<void> {
  const db = await createPgTestSchema({ poolSize: 8 });
  const options: LedgerOptions = {
    batchMaxWaitMs: 2,
    batchMaxSize: 500,
    batchConcurrency: 4,
    holdTimeoutMs: 600_000,
  };
  try {
    const namespaces = await createNamespacesBulk(db.pool, NAMESPACES);
    await db.pool.query(`update credit_balances set available = 0`);
    const seed = new LedgerService({ pool: db.pool, log: testLog, options });
    await Promise.all(namespaces.map((ns) => seed.topUp(ns, 1_000_000_000_000n, 'bench-seed')));
    await seed.stop();

    const rawPool = createPgPool({
      url: db.config.POSTGRES_URL,
      size: 8,
      schema: db.schema,
      applicationName: 'bench-raw',
    });
    const raw = await rawCeiling(rawPool, namespaces);
    await rawPool.end();
    console.log(`raw ceiling    ${round(raw, 0)} tx/s (SELECT FOR UPDATE + UPDATE + INSERT, pool of 8)`);

    const ledger = new LedgerService({ pool: db.pool, log: testLog, options });
    // Warm-up: connections, plans.
    await pairs(ledger, (_w, i) => namespaces[i % NAMESPACES]!).then(() => undefined);
    const spread = await pairs(ledger, (_w, i) => namespaces[(i * 7919) % NAMESPACES]!);
    const sp = summarize(spread.reserveLatencies);
    console.log(
      `spread (1,000) ${round(spread.pairsPerS, 0)} pairs/s = ${round(spread.pairsPerS / raw)}x raw; reserve p50 ${round(sp.p50)} ms p99 ${round(sp.p99)} ms (${CLIENTS} clients)`,
    );
    const hot = await pairs(ledger, () => namespaces[0]!);
    const hp = summarize(hot.reserveLatencies);
    console.log(
      `hot (1)        ${round(hot.pairsPerS, 0)} pairs/s = ${round(hot.pairsPerS / raw)}x raw; reserve p50 ${round(hp.p50)} ms p99 ${round(hp.p99)} ms`,
    );
    await ledger.stop();
    const mismatches = await new LedgerService({ pool: db.pool, log: testLog, options }).verifyLedger();
    console.log(
      `ledger verify  ${mismatches.length === 0 ? 'consistent' : `${mismatches.length} MISMATCHES`}`,
    );
    console.log(
      benchLine('ledger', {
        pairs_per_s: round(spread.pairsPerS, 0),
        hot_pairs_per_s: round(hot.pairsPerS, 0),
        raw_tx_per_s: round(raw, 0),
        ratio: round(spread.pairsPerS / raw),
        hot_ratio: round(hot.pairsPerS / raw),
        p99_ms: round(Math.max(sp.p99, hp.p99)),
      }),
    );
  } finally {
    await db.drop();
  }
}
