// The task runner against the real PostgreSQL: one runner at a time across processes (advisory lock).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../test/harness.js';
import { createPgPool } from '../stores/postgres/pool.js';
import { TaskRunner, type RecurringTask } from './task-runner.js';

let db: PgTestSchema;
beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 2, migrate: false });
});
afterAll(async () => {
  await db.drop();
});

describe('TaskRunner', () => {
  it('runs a task on only one of two runners at a time', async () => {
    // Two pools stand for two processes: advisory locks are per session.
    const pools = [
      createPgPool({ url: db.config.POSTGRES_URL, size: 2, schema: db.schema }),
      createPgPool({ url: db.config.POSTGRES_URL, size: 2, schema: db.schema }),
    ];
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const task: RecurringTask = {
      name: `exclusive-${db.schema}`,
      intervalMs: 10_000,
      run: async () => {
        running += 1;
        runs += 1;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, 100));
        running -= 1;
      },
    };
    const runners = pools.map((pool) => new TaskRunner({ pool, log: testLog, tasks: [task] }));
    const ran = await Promise.all([runners[0]!.runOnce(task), runners[1]!.runOnce(task)]);
    expect(ran.filter(Boolean)).toHaveLength(1);
    expect(runs).toBe(1);
    expect(maxRunning).toBe(1);
    // Once released, the other runner can take it.
    expect(await runners[1]!.runOnce(task)).toBe(true);
    expect(runs).toBe(2);
    await Promise.all(runners.map((r) => r.stop()));
    await Promise.all(pools.map((p) => p.end()));
  });
});
