// Spot-check consequences in the ledger on the real PostgreSQL: network-paid blind earnings, the refund and the
// earning's reversal of a job whose node was found wrong, the forfeit of held-back earnings; each replayed
// changes nothing, payouts never include them, and verifyLedger recomputes every balance.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { withTransaction } from '../../stores/postgres/pool.js';
import { LedgerService } from './index.js';

let db: PgTestSchema;
beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 4 });
});
afterAll(async () => {
  await db?.drop();
});

const node = () => `0x${randomUUID().replace(/-/g, '').padEnd(40, '0').slice(0, 40)}`;

describe('spot-check ledger operations', () => {
  it('refund + reversal + network expense + forfeit settle once, replays change nothing, the ledger verifies', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = new LedgerService({
      pool: db.pool,
      log: testLog,
      options: {
        batchMaxWaitMs: 0,
        batchMaxSize: 1,
        batchConcurrency: 1,
        holdTimeoutMs: 60_000,
        nodeEarningsHoldBackMs: 3_600_000,
      },
    });
    const cheat = node();
    const checker = node();
    await ledger.topUp(ns!.id, 1_000_000n, 'seed');
    const job = randomUUID();
    const other = randomUUID();
    for (const j of [job, other]) {
      await ledger.reserve(ns!.id, j, 1_000n);
      await ledger.settle(ns!.id, j, 600n);
      await ledger.creditEarning(cheat, j, 480n);
    }
    const blind = randomUUID();
    const run = () =>
      withTransaction(db.pool, (tx) =>
        ledger.applyInTransaction(tx, [
          ledger.ops.networkExpense(checker, blind, 480n),
          ledger.ops.refund(ns!.id, job),
          ledger.ops.earningReversal(cheat, job, 'earning'),
          ledger.ops.forfeit(cheat, `ban:${job}`),
        ]),
      );
    const first = await run();
    expect(first.map((o) => o.ok && o.value.kind)).toEqual([
      'network_expense',
      'refund',
      'earning_reversal',
      'forfeit',
    ]);
    const amounts = first.map((o) => (o.ok ? (o.value as { amount: bigint }).amount : -1n));
    // Refund = the settled charge; reversal = the job's earning; forfeit = the rest held back (the other job's).
    expect(amounts).toEqual([480n, 600n, 480n, 480n]);
    const again = await run();
    expect(again.every((o) => o.ok && o.value.replayed)).toBe(true);
    const bal = await ledger.getBalance(ns!.id);
    expect(bal!.available).toBe(1_000_000n - 1_200n + 600n);
    const nodes = await db.pool.query<{ node_address: string; earned: string }>(
      'select node_address, earned::text from node_balances where node_address = any($1) order by node_address',
      [[cheat, checker]],
    );
    expect(Object.fromEntries(nodes.rows.map((r) => [r.node_address, r.earned]))).toEqual({
      [cheat]: '0',
      [checker]: '480',
    });
    // Network-paid earnings are held back like any other: no payout of them inside the window.
    await expect(ledger.payout(checker, 1n, 'p1')).rejects.toMatchObject({ code: 'insufficient_credits' });
    expect(await ledger.verifyLedger()).toEqual([]);
    // A refund of a job with no settled charge is refused and leaves nothing behind.
    const open = randomUUID();
    await ledger.reserve(ns!.id, open, 10n);
    const refused = await withTransaction(db.pool, (tx) =>
      ledger.applyInTransaction(tx, [ledger.ops.refund(ns!.id, open)]),
    );
    expect(refused[0]!.ok).toBe(false);
    await ledger.void(ns!.id, open);
    expect(await ledger.verifyLedger()).toEqual([]);
    await ledger.stop();
  });

  it('verifyLedger reports a refund that does not match its settled charge', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = new LedgerService({
      pool: db.pool,
      log: testLog,
      options: { batchMaxWaitMs: 0, batchMaxSize: 1, batchConcurrency: 1, holdTimeoutMs: 60_000 },
    });
    await ledger.topUp(ns!.id, 1_000n, 'seed');
    const job = randomUUID();
    await ledger.reserve(ns!.id, job, 100n);
    await ledger.settle(ns!.id, job, 50n);
    // Forged behind the ledger's back: a refund larger than the charge, with the balance moved to match.
    await db.pool.query(
      `insert into ledger_entries (kind, namespace_id, job_id, amount, idem_key) values ('refund', $1, $2, 70, 'x')`,
      [ns!.id, job],
    );
    await db.pool.query('update credit_balances set available = available + 70 where namespace_id = $1', [
      ns!.id,
    ]);
    const found = await ledger.verifyLedger();
    expect(found.map((m) => m.field)).toContain('refund');
    await ledger.stop();
  });
});
