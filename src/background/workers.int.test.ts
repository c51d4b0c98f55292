// The workers role on the real stores, two instances at once: each task runs on one of them (advisory lock),
// an expired hold is released, a stale job with a closed hold becomes 'expired' exactly once, record events
// published through the sink become MongoDB job documents, and stop() is clean.
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, type TestStores } from '../../test/backbone-harness.js';
import { createNamespaces } from '../../test/factories.js';
import { testLog } from '../../test/harness.js';
import { waitFor } from '../../test/routing-fixtures.js';
import type { Config } from '../config/config.js';
import { COLLECTIONS } from '../modules/records/index.js';
import { createBackbone, type Backbone } from '../app/compose.js';
import { QUEUES } from '../stores/rabbitmq/topology.js';
import { startWorkers, type Workers } from './workers.js';

let stores: TestStores;
const backbones: Backbone[] = [];

beforeAll(async () => {
  stores = await createTestStores();
});
afterAll(async () => {
  for (const b of backbones) await b.lifecycle.stop();
  await stores?.drop();
});

async function backbone(config: Config): Promise<Backbone> {
  const b = await createBackbone(config, testLog, {
    executor: {
      run: () => Promise.reject(new Error('no node runs jobs in this test')),
    },
  });
  backbones.push(b);
  return b;
}

async function insertJob(b: Backbone, ns: string): Promise<string> {
  const id = randomUUID();
  await b.pool.query(
    `insert into jobs (id, namespace_id, model, mode, priority, environment, status, max_cost, created_at)
     values ($1, $2, 'llama3-8b', 'polling', 'bulk', 'testnet', 'queued', 1000, now())`,
    [id, ns],
  );
  return id;
}

describe('workers role', () => {
  it('two instances: hold expiry, stale-job reconciliation once, records consumed into MongoDB; stop() is clean', async () => {
    const config = stores.config({
      LEDGER_SWEEP_INTERVAL_MS: 200,
      JOBS_STALE_RECONCILE_INTERVAL_MS: 200,
      JOBS_STALE_GRACE_MS: 0,
      RECORDS_CONSUMER_BATCH_MAX_WAIT_MS: 20,
      RECORDS_EXPORT_DIR: `/tmp/${stores.db.schema}-records`,
    });
    const [a, b] = [await backbone(config), await backbone(config)];
    const [ns] = await createNamespaces(a.pool, 1);
    const nsId = ns!.id;
    await a.ledger.topUp(nsId, 100_000n, 'seed');

    // A job whose submit "crashed" after the reservation: its hold expires, the sweeper releases it, and the
    // reconciler finishes the row. Another whose hold was voided. A third still pending stays queued.
    const expiring = await insertJob(a, nsId);
    await a.ledger.reserve(nsId, expiring, 1000n, 300);
    const voided = await insertJob(a, nsId);
    await a.ledger.reserve(nsId, voided, 1000n);
    await a.ledger.void(nsId, voided);
    const open = await insertJob(a, nsId);
    await a.ledger.reserve(nsId, open, 1000n);
    // No record events are sent for them here: the reconciler sends each expired job's submitted and finished
    // events itself (from the result row it writes), so every job gets its document from the reconciler alone.

    const workers: Workers[] = [await startWorkers(a), await startWorkers(b)];
    try {
      await waitFor('hold released by the sweeper', async () => {
        return (await a.ledger.getHold(nsId, expiring))?.status === 'expired';
      });
      await waitFor('stale jobs expired', async () => {
        const r = await a.pool.query<{ n: number }>(
          `select count(*)::int as n from jobs where id = any($1) and status = 'expired' and cost = 0`,
          [[expiring, voided]],
        );
        return r.rows[0]!.n === 2;
      });
      const docs = () =>
        a.mongo.db.collection(COLLECTIONS.jobs).find({ ns: nsId }).project({ status: 1 }).toArray();
      await waitFor('job documents', async () => (await docs()).length === 2);
      expect((await docs()).map((d) => d.status)).toEqual(['expired', 'expired']);
      const balance = await a.ledger.getBalance(nsId);
      expect(balance).toMatchObject({ reserved: 1000n });
      const open_ = await a.pool.query<{ status: string }>('select status from jobs where id = $1', [open]);
      expect(open_.rows[0]!.status).toBe('queued');
      // Exactly once: each job's submitted + finished pair was emitted by one reconciler run (a second run
      // would show as duplicates).
      const stats = workers.map((w) => w.consumer.stats);
      expect(stats.reduce((s, x) => s + x.duplicates, 0)).toBe(0);
      expect(stats.reduce((s, x) => s + x.recorded, 0)).toBe(4);
      expect(stats.reduce((s, x) => s + x.deadLettered, 0)).toBe(0);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
    await Promise.all(workers.map((w) => w.stop())); // idempotent
    // Nothing left behind: the records queue is empty and has no consumer.
    const conn = await amqp.connect(stores.vhost.url);
    try {
      const q = await (await conn.createChannel()).checkQueue(QUEUES.records);
      expect(q).toMatchObject({ messageCount: 0, consumerCount: 0 });
    } finally {
      await conn.close();
    }
  });
});
