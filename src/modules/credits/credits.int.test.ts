// The ledger against the real PostgreSQL: concurrency, idempotency, crash safety, verification, expiry.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { CREDIT, createNamespaces } from '../../../test/factories.js';
import { createPgPool } from '../../stores/postgres/pool.js';
import { isAppError } from '../../platform/errors.js';
import { createLedgerTasks, LedgerService, type LedgerOptions } from './index.js';

const unbatched: LedgerOptions = {
  batchMaxWaitMs: 0,
  batchMaxSize: 1,
  batchConcurrency: 16,
  holdTimeoutMs: 60_000,
};
const batched: LedgerOptions = {
  batchMaxWaitMs: 2,
  batchMaxSize: 200,
  batchConcurrency: 4,
  holdTimeoutMs: 60_000,
};

let db: PgTestSchema;

beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 16 });
});
afterAll(async () => {
  await db.drop();
});

function ledgerWith(options: LedgerOptions, pool = db.pool): LedgerService {
  return new LedgerService({ pool, log: testLog, options });
}

describe.each([
  ['without batching', unbatched],
  ['with group commit', batched],
])('2,000 concurrent reservations of 1 credit on 1,000 credits (%s)', (_label, options) => {
  it('admits exactly 1,000 and never goes below zero', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = ledgerWith(options);
    await ledger.topUp(ns!.id, 1000n * CREDIT, 'initial');
    const results = await Promise.allSettled(
      Array.from({ length: 2000 }, () => ledger.reserve(ns!.id, randomUUID(), CREDIT)),
    );
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter(
      (r) => r.status === 'rejected' && isAppError(r.reason, 'insufficient_credits'),
    ).length;
    expect(ok).toBe(1000);
    expect(refused).toBe(1000);
    const balance = await ledger.getBalance(ns!.id);
    expect(balance).toMatchObject({ available: 0n, reserved: 1000n * CREDIT });
    const holds = await db.pool.query('select count(*)::int as n from credit_holds where namespace_id = $1', [
      ns!.id,
    ]);
    expect(holds.rows[0].n).toBe(1000);
    expect(await ledger.verifyLedger()).toEqual([]);
    await ledger.stop();
  });
});

describe('two-phase holds', () => {
  it('settle twice equals once; a reused key with another amount is a distinct error; settle above the hold is refused', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = ledgerWith(batched);
    await ledger.topUp(ns!.id, 100n, 't');
    const job = randomUUID();
    await ledger.reserve(ns!.id, job, 40n);
    expect(await ledger.reserve(ns!.id, job, 40n)).toMatchObject({ replayed: true, amount: 40n });
    await expect(ledger.reserve(ns!.id, job, 41n)).rejects.toMatchObject({ code: 'idempotency_conflict' });
    await expect(ledger.settle(ns!.id, job, 41n)).rejects.toMatchObject({ code: 'settle_exceeds_hold' });
    const first = await ledger.settle(ns!.id, job, 30n);
    const second = await ledger.settle(ns!.id, job, 30n);
    expect(first).toMatchObject({ charged: 30n, released: 10n, replayed: false });
    expect(second).toMatchObject({ charged: 30n, released: 10n, replayed: true });
    await expect(ledger.settle(ns!.id, job, 20n)).rejects.toMatchObject({ code: 'idempotency_conflict' });
    expect(await ledger.getBalance(ns!.id)).toMatchObject({ available: 70n, reserved: 0n });
    const entries = await db.pool.query(
      'select kind, amount from ledger_entries where job_id = $1 order by id',
      [job],
    );
    expect(entries.rows.map((r) => `${r.kind}:${r.amount}`)).toEqual([
      'reserve:40',
      'settle:30',
      'release:10',
    ]);
    // Top-up idempotency: same key and amount replays, another amount conflicts.
    expect(await ledger.topUp(ns!.id, 100n, 't')).toMatchObject({ replayed: true });
    await expect(ledger.topUp(ns!.id, 5n, 't')).rejects.toMatchObject({ code: 'idempotency_conflict' });
    await ledger.stop();
  });

  it('one namespace lacking funds does not fail the others in its batch', async () => {
    const [rich, poor] = await createNamespaces(db.pool, 2);
    const ledger = ledgerWith({ ...batched, batchMaxWaitMs: 20 });
    await ledger.topUp(rich!.id, 1_000n, 'r');
    const [a, b, c] = await Promise.allSettled([
      ledger.reserve(rich!.id, randomUUID(), 10n),
      ledger.reserve(poor!.id, randomUUID(), 10n),
      ledger.reserve(rich!.id, randomUUID(), 10n),
    ]);
    expect(a.status).toBe('fulfilled');
    expect(b.status === 'rejected' && isAppError(b.reason, 'insufficient_credits')).toBe(true);
    expect(c.status).toBe('fulfilled');
    expect(await ledger.getBalance(rich!.id)).toMatchObject({ available: 980n, reserved: 20n });
    await ledger.stop();
  });

  it('void refunds the whole hold, and node earnings are bounded by the settled charge', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    // No hold-back here (it has its own test below): earnings are payable at once.
    const ledger = ledgerWith({ ...batched, nodeEarningsHoldBackMs: 0 });
    await ledger.topUp(ns!.id, 100n, 't');
    const failed = randomUUID();
    await ledger.reserve(ns!.id, failed, 60n);
    expect(await ledger.void(ns!.id, failed)).toMatchObject({ released: 60n });
    expect(await ledger.void(ns!.id, failed)).toMatchObject({ replayed: true });
    const done = randomUUID();
    const node = `0x${'ab'.repeat(20)}`;
    await ledger.reserve(ns!.id, done, 50n);
    await ledger.settle(ns!.id, done, 20n);
    await expect(ledger.creditEarning(node, done, 21n)).rejects.toMatchObject({
      code: 'settle_exceeds_hold',
    });
    await ledger.creditEarning(node, done, 15n);
    expect(await ledger.creditEarning(node, done, 15n)).toMatchObject({ replayed: true });
    await expect(ledger.payout(node, 16n, 'p1')).rejects.toMatchObject({ code: 'insufficient_credits' });
    await ledger.payout(node, 15n, 'p1');
    expect(await ledger.getBalance(ns!.id)).toMatchObject({ available: 80n, reserved: 0n });
    expect(await ledger.verifyLedger()).toEqual([]);
    await ledger.stop();
  });

  it('a payout never includes earnings younger than the hold-back window', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const holdBackMs = 1_500;
    const ledger = ledgerWith({ ...batched, nodeEarningsHoldBackMs: holdBackMs });
    await ledger.topUp(ns!.id, 100n, 'hb-t');
    const node = `0x${'cd'.repeat(20)}`;
    const earn = async (amount: bigint) => {
      const job = randomUUID();
      await ledger.reserve(ns!.id, job, 20n);
      await ledger.settle(ns!.id, job, 20n);
      await ledger.creditEarning(node, job, amount);
    };
    await earn(10n);
    const earnedAt = Date.now();
    // Held back: not even 1 micro-credit of it is payable yet.
    await expect(ledger.payout(node, 1n, 'hb-p1')).rejects.toMatchObject({ code: 'insufficient_credits' });
    await new Promise((r) => setTimeout(r, holdBackMs - (Date.now() - earnedAt) + 200));
    await earn(7n); // fresh: held back while the first matured
    await expect(ledger.payout(node, 11n, 'hb-p2')).rejects.toMatchObject({
      code: 'insufficient_credits',
      message: expect.stringContaining('7 held back'),
    });
    expect(await ledger.payout(node, 10n, 'hb-p3')).toMatchObject({ amount: 10n, replayed: false });
    // A payout racing a new earning: nothing matured is left, and the new earning is held back too.
    const [late, pay] = await Promise.allSettled([earn(3n), ledger.payout(node, 1n, 'hb-p4')]);
    expect(late.status).toBe('fulfilled');
    expect(pay.status === 'rejected' && isAppError(pay.reason, 'insufficient_credits')).toBe(true);
    const paid = await db.pool.query<{ s: string }>(
      `select coalesce(sum(amount), 0)::text as s from ledger_entries where kind = 'payout' and node_address = $1`,
      [node],
    );
    expect(paid.rows[0]!.s).toBe('10');
    expect(await ledger.verifyLedger()).toEqual([]);
    await ledger.stop();
  });

  it('refuses bad input with a clear error, and a bad operation never fails the others in its batch', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = ledgerWith({ ...batched, batchMaxWaitMs: 20 });
    const count = async () =>
      (await db.pool.query('select count(*)::int as n from ledger_entries')).rows[0].n;
    const before = await count();
    await expect(ledger.topUp(ns!.id, 1.5, 'x')).rejects.toThrow(/integer number of micro-credits/);
    await expect(ledger.topUp(ns!.id, -3, 'x')).rejects.toThrow(/> 0/);
    await expect(ledger.topUp(ns!.id, 3, 'nul\u0000key')).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(ledger.grantBonus(ns!.id, 3, 'b', new Date(NaN))).rejects.toMatchObject({
      code: 'invalid_request',
    });
    await expect(ledger.reserve('not-a-uuid', randomUUID(), 1)).rejects.toThrow(/not a valid id/);
    await expect(ledger.reserve(randomUUID(), randomUUID(), 1n)).rejects.toMatchObject({
      code: 'namespace_not_found',
    });
    await expect(ledger.settle(ns!.id, randomUUID(), 1n)).rejects.toMatchObject({ code: 'hold_not_found' });
    expect(await count()).toBe(before);
    // In one batch: a top-up that would overflow bigint beside valid operations.
    await ledger.topUp(ns!.id, 10n, 'seed');
    const [big, ok] = await Promise.allSettled([
      ledger.topUp(ns!.id, 9_223_372_036_854_775_800n, 'huge'),
      ledger.reserve(ns!.id, randomUUID(), 5n),
    ]);
    expect(big.status === 'rejected' && isAppError(big.reason, 'invalid_amount')).toBe(true);
    expect(ok.status).toBe('fulfilled');
    expect(await ledger.getBalance(ns!.id)).toMatchObject({ available: 5n, reserved: 5n });
    await ledger.stop();
  });

  it('a settle racing a void (or the sweeper) on another process closes the hold exactly once', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const a = ledgerWith(unbatched);
    const b = ledgerWith(unbatched);
    await a.topUp(ns!.id, 1000n, 't');
    await a.reserve(ns!.id, randomUUID(), 200n); // keeps `reserved` above zero, so a double release would not trip the CHECK
    const job = randomUUID();
    await a.reserve(ns!.id, job, 100n);
    // Hold the namespace lock so that both operations queue behind it, then let them go.
    const gate = await db.pool.connect();
    await gate.query('begin');
    await gate.query('select 1 from credit_balances where namespace_id = $1 for update', [ns!.id]);
    const settle = a.settle(ns!.id, job, 60n);
    await new Promise((r) => setTimeout(r, 100));
    const voided = b.void(ns!.id, job);
    await new Promise((r) => setTimeout(r, 100));
    await gate.query('commit');
    gate.release();
    const [s, v] = await Promise.allSettled([settle, voided]);
    expect(s.status).toBe('fulfilled');
    expect(v.status === 'rejected' && isAppError(v.reason, 'hold_not_pending')).toBe(true);
    expect(await a.getBalance(ns!.id)).toMatchObject({ available: 740n, reserved: 200n });
    const closes = await db.pool.query(
      `select count(*)::int as n from ledger_entries where job_id = $1 and kind in ('settle','void','hold_expire')`,
      [job],
    );
    expect(closes.rows[0].n).toBe(1);
    expect(await a.verifyLedger()).toEqual([]);
    await a.stop();
    await b.stop();
  });

  it('a bonus held by a pending reservation expires once that reservation closes', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = ledgerWith(batched);
    await ledger.grantBonus(ns!.id, 100n, 'promo', new Date(Date.now() - 1));
    const job = randomUUID();
    await ledger.reserve(ns!.id, job, 100n);
    expect(await ledger.expireBonuses()).toBe(0);
    await ledger.void(ns!.id, job);
    expect(await ledger.expireBonuses()).toBe(1);
    expect(await ledger.getBalance(ns!.id)).toMatchObject({
      available: 0n,
      reserved: 0n,
      bonusAvailable: 0n,
    });
    expect(await ledger.verifyLedger()).toEqual([]);
    await ledger.stop();
  });
});

describe('crash safety and verification', () => {
  it('a connection terminated mid-transaction leaves no partial entries', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const appName = `ledger-victim-${randomUUID().slice(0, 8)}`;
    const victimPool = createPgPool({
      url: db.config.POSTGRES_URL,
      size: 1,
      schema: db.schema,
      applicationName: appName,
    });
    const ledger = ledgerWith(unbatched, victimPool);
    const setup = ledgerWith(unbatched);
    await setup.topUp(ns!.id, 100n, 'seed');
    // Another transaction holds an uncommitted entry with the key our batch will insert last, so the batch
    // blocks after it has already updated the balance and inserted the hold.
    const job = randomUUID();
    const blocker = await db.pool.connect();
    await blocker.query('begin');
    await blocker.query(
      `insert into ledger_entries (kind, namespace_id, job_id, amount, idem_key) values ('reserve', $1, $2, 1, $3)`,
      [ns!.id, job, `reserve:${job}`],
    );
    // The assertion attaches its handler now: the rejection can arrive while the test still awaits the
    // terminate query below, and a rejection nobody handles yet fails the run as unhandled.
    const refused = expect(ledger.reserve(ns!.id, job, 40n)).rejects.toMatchObject({
      code: 'store_unavailable',
      retryable: true,
    });
    let pid: number | undefined;
    for (let i = 0; i < 100 && pid === undefined; i += 1) {
      const r = await db.pool.query(
        `select pid from pg_stat_activity where application_name = $1 and wait_event_type = 'Lock'`,
        [appName],
      );
      pid = r.rows[0]?.pid;
      if (pid === undefined) await new Promise((res) => setTimeout(res, 20));
    }
    expect(pid).toBeDefined();
    const progress = await db.pool.query(`select query from pg_stat_activity where pid = $1`, [pid]);
    expect(progress.rows[0].query).toMatch(/insert into ledger_entries/);
    await db.pool.query('select pg_terminate_backend($1)', [pid]);
    await refused;
    await blocker.query('rollback');
    blocker.release();
    expect(await setup.getBalance(ns!.id)).toMatchObject({ available: 100n, reserved: 0n });
    const holds = await db.pool.query('select count(*)::int as n from credit_holds where job_id = $1', [job]);
    expect(holds.rows[0].n).toBe(0);
    const entries = await db.pool.query('select count(*)::int as n from ledger_entries where job_id = $1', [
      job,
    ]);
    expect(entries.rows[0].n).toBe(0);
    // The retried operation succeeds on a fresh connection.
    expect(await ledger.reserve(ns!.id, job, 40n)).toMatchObject({ replayed: false });
    expect(await setup.verifyLedger()).toEqual([]);
    await ledger.stop();
    await setup.stop();
    await victimPool.end();
  });

  it('verifyLedger reports a manually altered entry and a manually altered balance', async () => {
    const [ns, other] = await createNamespaces(db.pool, 2);
    const ledger = ledgerWith(batched);
    await ledger.topUp(ns!.id, 500n, 'a');
    await ledger.topUp(other!.id, 500n, 'b');
    const job = randomUUID();
    await ledger.reserve(ns!.id, job, 100n);
    expect(await ledger.verifyLedger()).toEqual([]);
    // Entries are append-only; tampering needs the trigger bypassed, as a rogue superuser would.
    await expect(
      db.pool.query(`update ledger_entries set amount = 1 where idem_key = $1`, [`topup:${ns!.id}:a`]),
    ).rejects.toThrow(/append-only/);
    const c = await db.pool.connect();
    await c.query(`set session_replication_role = replica`);
    await c.query(`update ledger_entries set amount = 400 where idem_key = $1`, [`topup:${ns!.id}:a`]);
    await c.query(`set session_replication_role = origin`);
    c.release();
    await db.pool.query('update credit_balances set available = available + 7 where namespace_id = $1', [
      other!.id,
    ]);
    const mismatches = await ledger.verifyLedger();
    expect(mismatches).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          scope: 'namespace',
          id: ns!.id,
          field: 'available',
          stored: '400',
          derived: '300',
        }),
        expect.objectContaining({
          scope: 'namespace',
          id: other!.id,
          field: 'available',
          stored: '507',
          derived: '500',
        }),
      ]),
    );
    await expect(db.pool.query('delete from credit_holds where job_id = $1', [job])).rejects.toThrow(
      /never deleted/,
    );
    await expect(db.pool.query('truncate ledger_entries')).rejects.toThrow(/append-only/);
    await db.pool.query(`update credit_holds set status = 'voided' where job_id = $1`, [job]);
    expect(await ledger.verifyLedger()).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          scope: 'hold',
          id: job,
          field: 'status',
          stored: 'voided',
          derived: 'pending',
        }),
      ]),
    );
    await db.pool.query(`update credit_holds set status = 'pending' where job_id = $1`, [job]);
    // Restore both so that later tests in this schema see a consistent ledger.
    const r = await db.pool.connect();
    await r.query(`set session_replication_role = replica`);
    await r.query(`update ledger_entries set amount = 500 where idem_key = $1`, [`topup:${ns!.id}:a`]);
    await r.query(`set session_replication_role = origin`);
    r.release();
    await db.pool.query('update credit_balances set available = available - 7 where namespace_id = $1', [
      other!.id,
    ]);
    expect(await ledger.verifyLedger()).toEqual([]);
    await ledger.stop();
  });

  it('the sweeper tasks stop at their abort signal (the lock lost): nothing released, the next run does it', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = ledgerWith(batched);
    await ledger.topUp(ns!.id, 100n, 't');
    await ledger.grantBonus(ns!.id, 30n, 'welcome', new Date(Date.now() - 1000));
    const stale = randomUUID();
    await ledger.reserve(ns!.id, stale, 50n, 1);
    await new Promise((r) => setTimeout(r, 20));
    const [holds, bonuses] = createLedgerTasks(ledger, { sweepIntervalMs: 1000 });
    if (!holds || !bonuses) throw new Error('the ledger has two tasks');
    const lost = new AbortController();
    lost.abort();
    expect(await holds.run(lost.signal)).toBe(0);
    expect(await bonuses.run(lost.signal)).toBe(0);
    expect((await ledger.getHold(ns!.id, stale))?.status).toBe('pending');
    expect(await holds.run(new AbortController().signal)).toBe(1);
    expect(await bonuses.run(new AbortController().signal)).toBe(1);
    expect((await ledger.getHold(ns!.id, stale))?.status).toBe('expired');
    await ledger.stop();
  });

  it('the sweeper releases an expired hold exactly once, and expires unused bonus', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = ledgerWith(batched);
    await ledger.topUp(ns!.id, 100n, 't');
    await ledger.grantBonus(ns!.id, 30n, 'welcome', new Date(Date.now() - 1000));
    const stale = randomUUID();
    const fresh = randomUUID();
    await ledger.reserve(ns!.id, stale, 50n, 1);
    await ledger.reserve(ns!.id, fresh, 20n, 60_000);
    await new Promise((r) => setTimeout(r, 20));
    const second = ledgerWith(batched); // another process sweeping at the same time
    const [a, b] = await Promise.all([ledger.expireHolds(), second.expireHolds()]);
    await second.stop();
    expect(a + b).toBe(1);
    expect((await ledger.getHold(ns!.id, stale))?.status).toBe('expired');
    expect((await ledger.getHold(ns!.id, fresh))?.status).toBe('pending');
    await expect(ledger.settle(ns!.id, stale, 10n)).rejects.toMatchObject({ code: 'hold_not_pending' });
    expect(await ledger.expireBonuses()).toBe(1);
    expect(await ledger.expireBonuses()).toBe(0);
    // 130 in, 20 still held, 30 of bonus expired.
    expect(await ledger.getBalance(ns!.id)).toMatchObject({
      available: 80n,
      reserved: 20n,
      bonusAvailable: 0n,
    });
    expect(await ledger.verifyLedger()).toEqual([]);
    await ledger.stop();
  });
});
