// The DESIGN.md §2 invariants, checked against the stores after a run (the demo ends with them; end-to-end
// tests assert them): every job terminal exactly once, one settlement per succeeded job (and per cancelled job
// charged for what it delivered) and none for the others,
// no pending hold, reserved = 0, balance = top-ups + bonuses − settled charges (− storage charges, − expired
// bonuses, + refunds of jobs a spot check found wrong), the ledger recomputes to the stored balances, node earnings never exceed what was charged, every
// succeeded job has exactly one earning, no lease
// left in Redis, and (optionally) one MongoDB job document per job.
import type { Db } from 'mongodb';
import type { LedgerService } from '../modules/credits/index.js';
import { COLLECTIONS } from '../modules/records/index.js';
import type { Pool } from '../stores/postgres/pool.js';
import { scanKeys, type Redis } from '../stores/redis/client.js';

export interface InvariantCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface InvariantScope {
  pool: Pool;
  ledger: LedgerService;
  redis: Redis;
  /** REDIS_KEY_PREFIX of the run (leases are looked up under it). */
  redisPrefix: string;
  /** Namespaces whose jobs and balances are checked. */
  namespaceIds: string[];
  /** When given: one job document per job of the namespaces. */
  mongo?: Db;
  /** The node operators' share (NODE_SHARE_PERCENT) the run settled with; 80 unless given. */
  nodeSharePercent?: number;
}

const n = (v: unknown) => Number(v ?? 0);

export async function checkInvariants(s: InvariantScope): Promise<InvariantCheck[]> {
  const checks: InvariantCheck[] = [];
  const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  const ns = s.namespaceIds;

  const open = await s.pool.query<{ n: number }>(
    `select count(*)::int as n from jobs where namespace_id = any($1) and status in ('queued', 'dispatched')`,
    [ns],
  );
  const total = await s.pool.query<{ n: number; d: number }>(
    'select count(*)::int as n, count(distinct id)::int as d from jobs where namespace_id = any($1)',
    [ns],
  );
  add(
    'every job terminal exactly once',
    n(open.rows[0]?.n) === 0 && total.rows[0]?.n === total.rows[0]?.d,
    `${total.rows[0]?.n} jobs, ${n(open.rows[0]?.n)} not terminal, ${total.rows[0]?.d} distinct ids`,
  );

  const settles = await s.pool.query<{ wrong: number; succeeded: number; settled: number }>(
    `with s as (select job_id, count(*) as c from ledger_entries where kind = 'settle' and namespace_id = any($1) group by job_id)
     select
       (select count(*) from jobs j left join s on s.job_id = j.id
         where j.namespace_id = any($1)
           and coalesce(s.c, 0) <> case when j.status = 'succeeded' or (j.status = 'cancelled' and coalesce(j.cost, 0) > 0) then 1 else 0 end)::int as wrong,
       (select count(*) from jobs where namespace_id = any($1) and status = 'succeeded')::int as succeeded,
       (select count(*) from s)::int as settled`,
    [ns],
  );
  const st = settles.rows[0]!;
  add(
    'one settlement per succeeded (or charged cancelled) job, none for the others',
    st.wrong === 0,
    `${st.succeeded} succeeded jobs, ${st.settled} jobs settled, ${st.wrong} mismatched`,
  );

  const pending = await s.pool.query<{ n: number }>(
    `select count(*)::int as n from credit_holds where namespace_id = any($1) and status = 'pending'`,
    [ns],
  );
  const balances = await s.pool.query<{ namespace_id: string; available: string; reserved: string }>(
    'select namespace_id, available, reserved from credit_balances where namespace_id = any($1)',
    [ns],
  );
  const reserved = balances.rows.reduce((a, r) => a + BigInt(r.reserved), 0n);
  add(
    'reserved = 0 once idle (no pending hold)',
    reserved === 0n && n(pending.rows[0]?.n) === 0,
    `reserved ${reserved} micro-credits, ${n(pending.rows[0]?.n)} pending holds`,
  );

  const flows = await s.pool.query<{ namespace_id: string; inflow: string; outflow: string }>(
    `select namespace_id,
            coalesce(sum(amount) filter (where kind in ('topup', 'bonus', 'refund')), 0)::text as inflow,
            coalesce(sum(amount) filter (where kind in ('settle', 'storage_charge', 'bonus_expire')), 0)::text as outflow
       from ledger_entries where namespace_id = any($1) group by namespace_id`,
    [ns],
  );
  const flowOf = new Map(flows.rows.map((r) => [r.namespace_id, BigInt(r.inflow) - BigInt(r.outflow)]));
  const unbalanced = balances.rows.filter(
    (r) => BigInt(r.available) + BigInt(r.reserved) !== (flowOf.get(r.namespace_id) ?? 0n),
  );
  add(
    'balance = top-ups + bonuses − settled charges + spot-check refunds',
    unbalanced.length === 0,
    unbalanced.length === 0
      ? `${balances.rows.length} namespaces balance`
      : `unbalanced: ${unbalanced.map((r) => r.namespace_id).join(', ')}`,
  );

  const mismatches = await s.ledger.verifyLedger();
  add(
    'ledger verified (every balance and hold recomputed from its entries)',
    mismatches.length === 0,
    `${mismatches.length} mismatches`,
  );

  const earnings = await s.pool.query<{ over: number }>(
    `select count(*)::int as over from (
       select e.job_id from ledger_entries e join ledger_entries c on c.job_id = e.job_id and c.kind = 'settle'
        where e.kind = 'earning' and c.namespace_id = any($1) group by e.job_id having sum(e.amount) > min(c.amount)) x`,
    [ns],
  );
  add(
    'node earnings never exceed the charge',
    n(earnings.rows[0]?.over) === 0,
    `${n(earnings.rows[0]?.over)} over`,
  );

  // The earning is written with the settle and the terminal row (one transaction): a succeeded job whose share
  // of its charge is positive has exactly one (so has a cancelled job charged for what it delivered), every other
  // job none.
  const share = s.nodeSharePercent ?? 80;
  const earned = await s.pool.query<{ wrong: number; earning: number }>(
    `with e as (select job_id, count(*) as c from ledger_entries where kind = 'earning' group by job_id)
     select count(*) filter (where coalesce(e.c, 0) <> case when j.status in ('succeeded', 'cancelled') and coalesce(j.cost, 0) * $2 / 100 > 0
                                                         and j.node_address is not null then 1 else 0 end)::int as wrong,
            count(e.job_id)::int as earning
       from jobs j left join e on e.job_id = j.id where j.namespace_id = any($1)`,
    [ns, share],
  );
  add(
    'every succeeded job has exactly one earning',
    n(earned.rows[0]?.wrong) === 0,
    `${n(earned.rows[0]?.earning)} jobs with earnings, ${n(earned.rows[0]?.wrong)} mismatched`,
  );

  const leases = await scanKeys(s.redis, `${s.redisPrefix}live:*lease:*`);
  add('no lease left in Redis', leases.length === 0, `${leases.length} lease keys`);

  if (s.mongo) {
    const docs = await s.mongo.collection(COLLECTIONS.jobs).countDocuments({ ns: { $in: ns } });
    add(
      'one MongoDB job document per job',
      docs === total.rows[0]?.n,
      `${docs} documents for ${total.rows[0]?.n} jobs`,
    );
  }
  return checks;
}

/** Re-checks until every invariant holds or the time is up (jobs finish and records arrive asynchronously). */
export async function waitForInvariants(
  s: InvariantScope,
  opts: { timeoutMs: number; intervalMs?: number },
): Promise<InvariantCheck[]> {
  const deadline = Date.now() + opts.timeoutMs;
  let checks = await checkInvariants(s);
  while (checks.some((c) => !c.ok) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
    checks = await checkInvariants(s);
  }
  return checks;
}
