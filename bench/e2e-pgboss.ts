// pg-boss 10 fetch(100)+complete with 4 workers on the run's PostgreSQL: the job-queue reference of `bench e2e`.
import PgBoss from 'pg-boss';
import type { TestStores } from '../test/backbone-harness.js';
import { uniqueName } from '../test/harness.js';

export async function pgBossRate(stores: TestStores, jobs: number): Promise<number> {
  const schema = uniqueName('pgboss');
  const boss = new PgBoss({ connectionString: stores.config().POSTGRES_URL, schema, max: 8 });
  boss.on('error', () => undefined);
  await boss.start();
  try {
    const queue = 'bench';
    await boss.createQueue(queue);
    for (let i = 0; i < jobs; i += 1000)
      await boss.insert(
        Array.from({ length: Math.min(1000, jobs - i) }, (_, j) => ({ name: queue, data: { i: i + j } })),
      );
    const t0 = performance.now();
    let done = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (;;) {
          const batch = await boss.fetch(queue, { batchSize: 100 });
          if (batch.length === 0) return;
          await boss.complete(
            queue,
            batch.map((j) => j.id),
          );
          done += batch.length;
        }
      }),
    );
    if (done !== jobs) throw new Error(`pg-boss completed ${done} of ${jobs}`);
    return done / ((performance.now() - t0) / 1000);
  } finally {
    await boss.stop({ graceful: false, wait: true }).catch(() => undefined);
    const { Client } = (await import('pg')).default;
    const c = new Client({ connectionString: stores.config().POSTGRES_URL });
    await c.connect();
    await c.query(`drop schema if exists ${schema} cascade`);
    await c.end();
  }
}
