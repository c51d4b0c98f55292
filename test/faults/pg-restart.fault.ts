// A PostgreSQL fast restart (57P01 on every connection) while a task holds its advisory lock: the process
// survives, the task is told its lock is lost (signal aborted), stops, and is retaken once the server is back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskRunner, type RecurringTask } from '../../src/background/task-runner.js';
import { createPgPool, withAdvisoryLock, type Pool } from '../../src/stores/postgres/pool.js';
import { isAppError } from '../../src/platform/errors.js';
import { testLog } from '../harness.js';
import { startOwnPostgres, type OwnPostgres } from './servers.js';

let server: OwnPostgres;
let pool: Pool;
const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);

beforeAll(async () => {
  server = await startOwnPostgres();
  pool = createPgPool({ url: server.url, size: 4, schema: 'public' });
  process.on('uncaughtException', onUncaught);
});
afterAll(async () => {
  process.off('uncaughtException', onUncaught);
  await pool?.end().catch(() => undefined);
  await server?.destroy();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function advisoryLocksHeld(): Promise<number> {
  const r = await pool.query<{ n: number }>(
    "select count(*)::int as n from pg_locks where locktype = 'advisory' and granted",
  );
  return r.rows[0]!.n;
}

describe('a PostgreSQL restart under a held task lock', () => {
  it('does not crash the process; the task sees its lock lost, stops, and is retaken', async () => {
    let starts = 0;
    let aborted = 0;
    let active = 0;
    const task: RecurringTask = {
      name: 'holder',
      intervalMs: 100,
      // Holds the lock until told to stop (or 20 s: the old code never tells it).
      run: async (signal) => {
        starts += 1;
        active += 1;
        try {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 20_000);
            signal.addEventListener('abort', () => {
              aborted += 1;
              clearTimeout(t);
              resolve();
            });
          });
        } finally {
          active -= 1;
        }
      },
    };
    const runner = new TaskRunner({ pool, log: testLog, tasks: [task] });
    runner.start();
    await until('the task to hold its lock', async () => active === 1 && (await advisoryLocksHeld()) === 1);
    expect(starts).toBe(1);

    await server.restart();

    await until('the task to notice its lost lock', () => aborted === 1);
    // Retaken on a later turn, on a fresh connection, with a real lock on the restarted server.
    await until(
      'the task to be retaken',
      async () => starts >= 2 && (await advisoryLocksHeld().catch(() => 0)) === 1,
    );
    expect(uncaught).toEqual([]);
    await runner.stop();
    expect(active).toBe(0);
  });

  it('withAdvisoryLock rejects with a retryable store_unavailable when the lock was lost under fn', async () => {
    const r = withAdvisoryLock(pool, 'lost-under-fn', async (lockLost) => {
      await new Promise<void>((resolve) => lockLost.addEventListener('abort', () => resolve()));
      return 'done';
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    await sleep(200);
    await server.restart();
    const err = await r;
    expect(isAppError(err, 'store_unavailable')).toBe(true);
    expect((err as { retryable: boolean }).retryable).toBe(true);
    expect(uncaught).toEqual([]);
    // The pool works again afterwards (the broken client was not handed back).
    expect((await pool.query<{ one: number }>('select 1 as one')).rows[0]!.one).toBe(1);
  });
});
