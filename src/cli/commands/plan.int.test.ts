// `rty plan` on the real stores (own PostgreSQL schema, own Mongo database): list, set (charged, audited as `cli`),
// a retry with the same key replays, show, cancel, receipts; exit codes 1 refused (402), 2 usage, 4 missing.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { CREDIT, createNamespaces } from '../../../test/factories.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { LedgerService } from '../../modules/credits/index.js';
import { buildProgram } from '../program.js';

let db: PgTestSchema;
let mongo: MongoTestDb;

async function rty(...args: string[]): Promise<{ code: number; out: string[] }> {
  const out: string[] = [];
  let code = 0;
  const program = buildProgram(
    { config: { ...db.config, MONGO_DB: mongo.dbName }, log: testLog, out: (l) => out.push(l) },
    (c) => (code = c),
  );
  await program.parseAsync(['node', 'rty', ...args]);
  return { code, out };
}

const count = async (sql: string, params: unknown[] = []) =>
  Number((await db.pool.query<{ n: string }>(sql, params)).rows[0]!.n);

beforeAll(async () => {
  [db, mongo] = await Promise.all([createPgTestSchema(), createMongoTestDb()]);
});
afterAll(async () => {
  await Promise.all([db?.drop(), mongo?.drop()]);
});

describe('rty plan', () => {
  it('lists, sets (charged and audited), replays a retry, shows, cancels and lists receipts', async () => {
    const [ns] = await createNamespaces(db.pool, 1);
    const ledger = new LedgerService({
      pool: db.pool,
      log: testLog,
      options: { batchMaxWaitMs: 0, batchMaxSize: 1, batchConcurrency: 1, holdTimeoutMs: 60_000 },
    });
    await ledger.topUp(ns!.id, CREDIT, 'cli-plan');
    await ledger.stop();

    const list = await rty('plan', 'list');
    expect(list.code).toBe(0);
    expect(list.out.join('\n')).toMatch(/space-90 +retention 90 days/);

    const set = await rty('plan', 'set', ns!.id, 'space-90', '--idempotency-key', 'cli-1');
    expect(set.code, set.out.join('\n')).toBe(0);
    expect(set.out[0]).toContain('default → space-90');
    expect(set.out[0]).toContain('charged 20000 µ');
    const again = await rty('plan', 'set', ns!.id, 'space-90', '--idempotency-key', 'cli-1');
    expect(again.code).toBe(0);
    expect(again.out[0]).toContain('replayed');
    expect(
      await count(
        `select count(*) as n from ledger_entries where namespace_id = $1 and kind = 'storage_charge'`,
        [ns!.id],
      ),
    ).toBe(1);
    expect(
      await count(
        `select count(*) as n from audit_log where actor = 'cli' and action = 'space_plan.set' and target = $1`,
        [`namespace:${ns!.id}`],
      ),
    ).toBe(1);

    const show = await rty('plan', 'show', ns!.id);
    expect(show.code).toBe(0);
    expect(show.out[0]).toMatch(/plan space-90, retention 90 days, paid through/);

    const cancel = await rty('plan', 'cancel', ns!.id);
    expect(cancel.code).toBe(0);
    expect(cancel.out[0]).toMatch(/space-90 → default, retention 7 days, charged 0 µ.*idempotency key cli-/);
    const receipts = await rty('plan', 'receipts', ns!.id);
    expect(receipts.code).toBe(0);
    expect(receipts.out.at(-1)).toBe(`receipts: 0 retention run(s) of namespace ${ns!.id}`);
  });

  it('exits 1 when credits are short (nothing changes), 2 on a usage error, 4 for a missing namespace', async () => {
    const [poor] = await createNamespaces(db.pool, 1);
    const audit = await count('select count(*) as n from audit_log');
    const short = await rty('plan', 'set', poor!.id, 'space-30');
    expect(short.code).toBe(1);
    expect(short.out[0]).toMatch(/^REFUSED: .*lacks.*\(nothing changed\)/);
    expect(
      await count('select count(*) as n from space_plan_changes where namespace_id = $1', [poor!.id]),
    ).toBe(0);
    expect(await count('select count(*) as n from audit_log')).toBe(audit);

    const unknownPlan = await rty('plan', 'set', poor!.id, 'space-2');
    expect(unknownPlan.code).toBe(2);
    expect(unknownPlan.out[0]).toContain('unknown plan "space-2"');
    expect((await rty('plan', 'show', 'not-a-uuid')).code).toBe(2);
    expect((await rty('plan', 'set', poor!.id, 'space-30', '--idempotency-key', 'bad key')).code).toBe(2);

    const missing = await rty('plan', 'show', randomUUID());
    expect(missing.code).toBe(4);
    expect(missing.out[0]).toMatch(/^MISSING: no namespace/);
    expect((await rty('plan', 'receipts', randomUUID())).code).toBe(4);
    expect((await rty('plan', 'set', randomUUID(), 'space-30', '--idempotency-key', 'k')).code).toBe(4);
  });
});
