// The Space plan against the real PostgreSQL ledger and FerretDB/MongoDB: one storage charge per namespace per
// day however often the task runs, grace then fall back to the default period, then export and delete.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { CREDIT, createNamespaces } from '../../../test/factories.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { jobEvents } from '../../../test/record-events.js';
import type { Clock } from '../../platform/clock.js';
import { AuditService } from '../audit/index.js';
import { LedgerService } from '../credits/index.js';
import {
  COLLECTIONS,
  GridFsBlobStore,
  RecorderService,
  RecordsRepository,
  RetentionPolicies,
  RetentionService,
  StorageBillingService,
} from './index.js';
import { dayChargeMicro, spacePlanCatalogue } from './space-plan.js';
import { DirectoryStore } from '../../stores/cold/index.js';

const DAY = 86_400_000;
let pg: PgTestSchema;
let mongo: MongoTestDb;
let dir: string;
let ledger: LedgerService;
const clock: Clock & { at: Date } = { at: new Date(), now: () => clock.at };

beforeAll(async () => {
  [pg, mongo] = await Promise.all([createPgTestSchema({ poolSize: 6 }), createMongoTestDb()]);
  dir = await mkdtemp(join(tmpdir(), 'rty-billing-'));
  ledger = new LedgerService({
    pool: pg.pool,
    log: testLog,
    options: { batchMaxWaitMs: 1, batchMaxSize: 50, batchConcurrency: 2, holdTimeoutMs: 60_000 },
  });
});
afterAll(async () => {
  await ledger?.stop();
  await Promise.all([mongo?.drop(), pg?.drop(), rm(dir, { recursive: true, force: true })]);
});

const repo = () => new RecordsRepository(mongo.store.db);
const billing = () =>
  new StorageBillingService({
    pool: pg.pool,
    repo: repo(),
    ledger,
    audit: new AuditService({ pool: pg.pool, log: testLog }),
    clock,
    log: testLog,
    options: { defaultRetentionDays: 7, graceMs: 2 * DAY },
  });

async function record(namespaceId: string, jobs: number, ageMs: number) {
  const recorder = new RecorderService({
    repo: repo(),
    blobs: new GridFsBlobStore(mongo.store.db),
    policies: new RetentionPolicies({ pool: pg.pool, clock, cacheMs: 0 }),
    log: testLog,
    options: { largePayloadBytes: 1 << 20, maxDocumentBytes: 1 << 22 },
  });
  const evs = Array.from({ length: jobs }, (_, i) =>
    jobEvents({
      namespaceId,
      at: new Date(clock.now().getTime() - ageMs + i * 1000),
      prompt: 'z'.repeat(2000),
    }),
  ).flat();
  expect((await recorder.record(evs)).every((o) => o.status === 'recorded')).toBe(true);
}

async function storageEntries(namespaceId: string) {
  const r = await pg.pool.query<{ amount: bigint; idem_key: string }>(
    `select amount, idem_key from ledger_entries where namespace_id = $1 and kind = 'storage_charge' order by id`,
    [namespaceId],
  );
  return r.rows;
}

async function storedBytes(namespaceId: string): Promise<number> {
  let n = 0;
  for (const c of Object.values(COLLECTIONS)) {
    for (const d of await mongo.store.db.collection(c).find({ ns: namespaceId }).toArray())
      n += d.bytes as number;
  }
  return n;
}

describe('storage charge', () => {
  it('charges once per namespace per day, however often and concurrently the task runs', async () => {
    clock.at = new Date('2026-03-10T10:00:00Z');
    const [ns] = await createNamespaces(pg.pool, 1);
    await ledger.topUp(ns!.id, 100n * CREDIT, 'initial');
    await billing().setPlan(ns!.id, 'space-30');
    await record(ns!.id, 20, DAY);
    const bytes = await storedBytes(ns!.id);
    const expected = dayChargeMicro(bytes, spacePlanCatalogue().get('space-30')!);
    expect(expected).toBeGreaterThan(0n);

    const [first, second] = await Promise.all([billing().chargeAll(), billing().chargeAll()]);
    expect(first.charged + second.charged + first.already_charged + second.already_charged).toBe(2);
    // More data later the same day changes nothing: the day's decision is stored.
    await record(ns!.id, 5, DAY);
    expect((await billing().chargeAll()).already_charged).toBe(1);
    expect(await storageEntries(ns!.id)).toEqual([
      { amount: expected, idem_key: `storage_charge:${ns!.id}:records-storage:2026-03-10` },
    ]);
    expect((await ledger.getBalance(ns!.id))?.available).toBe(100n * CREDIT - expected);

    clock.at = new Date('2026-03-11T01:00:00Z');
    expect((await billing().chargeAll()).charged).toBe(1);
    expect(await billing().chargeAll()).toMatchObject({ charged: 0, already_charged: 1 });
    expect(await storageEntries(ns!.id)).toHaveLength(2);
    expect(await ledger.verifyLedger()).toEqual([]);
  });

  it('falls back to the default period after the grace period when credits run out, then exports and deletes', async () => {
    clock.at = new Date('2026-04-01T10:00:00Z');
    const [ns] = await createNamespaces(pg.pool, 1);
    await billing().setPlan(ns!.id, 'space-90');
    await record(ns!.id, 6, 40 * DAY);
    await record(ns!.id, 4, DAY);

    expect((await billing().chargeAll()).grace_started).toBe(1);
    clock.at = new Date('2026-04-02T10:00:00Z');
    expect((await billing().chargeAll()).unpaid).toBe(1);
    const mid = await pg.pool.query('select retention_plan, retention_days from namespaces where id = $1', [
      ns!.id,
    ]);
    expect(mid.rows[0]).toEqual({ retention_plan: 'space-90', retention_days: 90 });
    clock.at = new Date('2026-04-03T11:00:00Z');
    expect((await billing().chargeAll()).lapsed).toBe(1);
    const after = await pg.pool.query('select retention_plan, retention_days from namespaces where id = $1', [
      ns!.id,
    ]);
    expect(after.rows[0]).toEqual({ retention_plan: 'default', retention_days: 7 });
    const events = await pg.pool.query<{ kind: string }>(
      'select kind from retention_plan_events where namespace_id = $1 order by id',
      [ns!.id],
    );
    expect(events.rows.map((e) => e.kind)).toEqual(['plan_set', 'grace_started', 'plan_lapsed']);
    // The lapse is a plan change the network made: audited with it.
    const audited = await pg.pool.query(`select actor, action, body from audit_log where target = $1`, [
      `namespace:${ns!.id}`,
    ]);
    expect(audited.rows).toEqual([
      {
        actor: 'system:storage-billing',
        action: 'space_plan.lapse',
        body: { day: '2026-04-03', from: 'space-90', plan: 'default', days: 7 },
      },
    ]);
    expect(await storageEntries(ns!.id)).toEqual([]);

    const retention = new RetentionService({
      pool: pg.pool,
      repo: repo(),
      target: new DirectoryStore(dir),
      clock,
      log: testLog,
      options: { fileMaxDocs: 1000, deleteBatchSize: 100 },
    });
    await retention.sweep();
    const left = await mongo.store.db
      .collection(COLLECTIONS.jobs)
      .countDocuments({ ns: ns!.id, ts: { $lt: new Date(clock.at.getTime() - 7 * DAY) } });
    expect(left).toBe(0);
    expect(await mongo.store.db.collection(COLLECTIONS.jobs).countDocuments({ ns: ns!.id })).toBe(4);
    const receipts = await retention.listReceipts(ns!.id);
    expect(receipts.find((r) => r.collection === COLLECTIONS.jobs)).toMatchObject({
      status: 'done',
      docCount: 6,
      deletedCount: 6,
    });
  });
});
