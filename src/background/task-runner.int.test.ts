// The task runner against the real PostgreSQL: one runner at a time across processes (advisory lock); the
// lock session's health: pinged past its own idle timeout while held, handed back with the server's setting,
// and released by the server within that timeout when its holder freezes.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../test/harness.js';
import { createPgPool, withAdvisoryLock } from '../stores/postgres/pool.js';
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

  it('a lock session outlives its own idle timeout while held (pinged) and goes back with the server setting', async () => {
    const pool = createPgPool({ url: db.config.POSTGRES_URL, size: 1, schema: db.schema });
    const other = createPgPool({ url: db.config.POSTGRES_URL, size: 1, schema: db.schema });
    const key = `healthy-${randomUUID()}`;
    const held = async () =>
      (
        await other.query<{ n: number }>(
          `select count(*)::int as n from pg_locks l join pg_stat_activity a on a.pid = l.pid
            where l.locktype = 'advisory' and l.granted and a.application_name = 'rty' and a.pid <> pg_backend_pid()
              and l.objid = (hashtextextended($1, 0) & 4294967295)::bigint::oid`,
          [key],
        )
      ).rows[0]!.n;
    let abortedInside = false;
    const r = await withAdvisoryLock(
      pool,
      key,
      async (lost) => {
        // Four idle timeouts long: without the pings the server would end the session (and the lock).
        await new Promise((res) => setTimeout(res, 1_200));
        const stillHeld = await held();
        abortedInside = lost.aborted;
        return stillHeld;
      },
      { sessionTimeoutMs: 300 },
    );
    expect(r).toEqual({ ran: true, value: 1 });
    expect(abortedInside).toBe(false);
    expect(await held()).toBe(0);
    // The same (only) pooled connection has the server's idle_session_timeout again.
    const s = await pool.query<{ setting: string; reset_val: string }>(
      `select setting, reset_val from pg_settings where name = 'idle_session_timeout'`,
    );
    expect(s.rows[0]!.setting).toBe(s.rows[0]!.reset_val);
    await Promise.all([pool.end(), other.end()]);
  });

  it('a holder that freezes with its session open loses the lock to the server within the session timeout', async () => {
    const key = `frozen-${randomUUID()}`;
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/lock-holder.child.ts', db.config.POSTGRES_URL, db.schema, key, '1000'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((res) => child.once('exit', res));
    const pool = createPgPool({ url: db.config.POSTGRES_URL, size: 1, schema: db.schema });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => d.toString().includes('HELD') && resolve());
        child.once('exit', (code) => reject(new Error(`lock holder exited early (${code})`)));
      });
      const frozenAt = Date.now();
      expect(await withAdvisoryLock(pool, key, async () => 'taken')).toEqual({ ran: false });
      let took: { ran: boolean } = { ran: false };
      while (!took.ran && Date.now() - frozenAt < 10_000) {
        await new Promise((res) => setTimeout(res, 100));
        took = await withAdvisoryLock(pool, key, async () => 'taken');
      }
      expect(took).toEqual({ ran: true, value: 'taken' });
      // Within the 1 s session timeout plus scheduling slack, not the OS's TCP timeout.
      expect(Date.now() - frozenAt).toBeLessThan(5_000);
    } finally {
      child.kill('SIGKILL');
      await exited;
      await pool.end();
    }
  });
});
