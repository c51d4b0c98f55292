// PostgreSQL pool, transactions, advisory locks and driver-error translation. Nothing domain-specific.
import pg from 'pg';
import { AppError } from '../../platform/errors.js';
import { isNetworkError } from '../net-errors.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

// int8 (bigint) columns arrive as exact JS bigint, never as lossy numbers or strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (v: string) => BigInt(v));

export interface PgPoolOptions {
  url: string;
  size: number;
  /** search_path for every connection: the schema that holds our tables. */
  schema: string;
  applicationName?: string;
}

export function createPgPool(opts: PgPoolOptions): Pool {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.size,
    application_name: opts.applicationName ?? 'rty',
    options: `-c search_path=${opts.schema}`,
    connectionTimeoutMillis: 5_000,
    // A peer gone without a FIN (partition, frozen host) is noticed in tens of seconds, not the OS's 2 hours.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  // A terminated idle connection must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs fn in one transaction; rolls back on any error and rethrows it translated. */
export async function withTransaction<T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
  isolation: 'read committed' | 'repeatable read' | 'serializable' = 'read committed',
): Promise<T> {
  const client = await pool.connect().catch((err: unknown) => {
    throw translatePgError(err);
  });
  let broken = false;
  // A connection killed while checked out emits 'error' besides failing the query; the query's error is enough.
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    await client.query(`begin isolation level ${isolation}`);
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (err) {
    try {
      await client.query('rollback');
    } catch {
      broken = true; // the connection is gone (e.g. terminated); never hand it out again
    }
    throw translatePgError(err);
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

export interface AdvisoryLockOptions {
  /**
   * The lock session's idle_session_timeout while it holds the lock (30 s): a holder that stopped without
   * closing its socket (frozen, partitioned) loses the lock to the server within this, so another process
   * takes the work over. The holder pings its session every third of it, which keeps a live session from
   * idling out and notices a dead one (no answer within a third: the lock is treated as lost).
   */
  sessionTimeoutMs?: number;
}

/**
 * Runs fn only if this process wins the session-level advisory lock `key`; returns `{ ran: false }` otherwise.
 * The lock lives as long as its connection: if PostgreSQL terminates it (restart, 57P01, the session's own
 * idle timeout) or the session stops answering its pings, the lock is (or may be) gone and another process
 * may take it, so fn's signal aborts at once (fn must stop) and the call rejects with `store_unavailable` once
 * fn has returned. The dedicated client always has an 'error' listener: a connection killed while checked out
 * emits 'error', and an unheard 'error' event kills the process.
 */
export async function withAdvisoryLock<T>(
  pool: Pool,
  key: string,
  fn: (lockLost: AbortSignal) => Promise<T>,
  opts: AdvisoryLockOptions = {},
): Promise<{ ran: true; value: T } | { ran: false }> {
  const sessionTimeoutMs = opts.sessionTimeoutMs ?? 30_000;
  const client = await pool.connect().catch((err: unknown) => {
    throw translatePgError(err);
  });
  const lost = new AbortController();
  let held = false;
  let lostBy: unknown;
  const onLost = (err?: unknown) => {
    if (lost.signal.aborted) return;
    lostBy = err ?? new Error('connection ended');
    lost.abort(lostBy);
  };
  client.on('error', onLost);
  client.on('end', onLost);
  try {
    // The timeout is set only once the lock is won (the common "taken elsewhere" case costs one statement).
    const got = await client
      .query<{ ok: boolean }>('select pg_try_advisory_lock(hashtextextended($1, 0)) as ok', [key])
      .catch((err: unknown) => {
        onLost(err);
        throw translatePgError(err); // never held: not a lost lock, just an unreachable store
      });
    if (!got.rows[0]?.ok) return { ran: false };
    held = true;
    let value: T;
    const stopPings = keepSessionAlive(client, sessionTimeoutMs, onLost);
    try {
      await client
        .query(`select set_config('idle_session_timeout', $1, false)`, [`${sessionTimeoutMs}ms`])
        .catch((err: unknown) => {
          onLost(err);
          throw err;
        });
      value = await fn(lost.signal);
    } finally {
      await stopPings();
      // Unlock, and give the pooled connection back with the server's own idle_session_timeout.
      if (!lost.signal.aborted)
        await client
          .query(
            `select pg_advisory_unlock(hashtextextended($1, 0)),
                    set_config('idle_session_timeout', (select reset_val from pg_settings where name = 'idle_session_timeout'), false)`,
            [key],
          )
          .catch((err: unknown) => onLost(err));
    }
    if (lost.signal.aborted) throw lockLostError(key, lostBy);
    return { ran: true, value };
  } catch (err) {
    if (held && lost.signal.aborted && !(err instanceof AppError)) throw lockLostError(key, lostBy);
    throw translatePgError(err);
  } finally {
    client.off('error', onLost);
    client.off('end', onLost);
    // A late 'error' from a dead socket after release must still be heard (the pool listens on idle
    // clients only); a broken client is destroyed, never handed out again.
    if (lost.signal.aborted) client.on('error', () => undefined);
    client.release(lost.signal.aborted ? (lostBy instanceof Error ? lostBy : true) : false);
  }
}

/**
 * Pings the lock session every third of its idle timeout (so it never idles out while held) with an answer
 * deadline of the same third; an error or no answer in time calls onLost (the client is then destroyed on
 * release). Returns a stop function that waits for a ping in flight.
 */
function keepSessionAlive(
  client: PoolClient,
  sessionTimeoutMs: number,
  onLost: (err: unknown) => void,
): () => Promise<void> {
  const everyMs = Math.max(50, Math.floor(sessionTimeoutMs / 3));
  let inFlight: Promise<void> | undefined;
  let stopped = false;
  const timer = setInterval(() => {
    if (inFlight || stopped) return;
    inFlight = (async () => {
      let deadline: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          client.query('select 1'),
          new Promise((_, reject) => {
            deadline = setTimeout(
              () => reject(new Error(`lock session did not answer its ping within ${everyMs} ms`)),
              everyMs,
            );
          }),
        ]);
      } catch (err) {
        onLost(err);
      } finally {
        clearTimeout(deadline);
        inFlight = undefined;
      }
    })();
  }, everyMs);
  timer.unref();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await inFlight;
  };
}

function lockLostError(key: string, cause: unknown): AppError {
  return new AppError(
    'store_unavailable',
    `advisory lock ${key} lost with its PostgreSQL connection`,
    { lock: key },
    { cause },
  );
}

// 08xxx connection exceptions, 57P01-03 admin shutdown / crash shutdown / cannot connect now (starting up),
// 57P05 idle session timeout, 25P03 idle-in-transaction timeout, 53300 too many connections, 53200 out of
// memory, 58030 I/O error: the server is restarting or overloaded, not the request wrong. All retryable.
const connectionLost = /^(08...|57P0[1-3]|57P05|25P03|53300|53200|58030)$/;

/** Maps SQLSTATE codes to catalogue errors with a public message (the driver's text stays in `cause`); leaves AppErrors alone. */
export function translatePgError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const code = (err as { code?: string } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code && connectionLost.test(code))
    return new AppError(
      'store_unavailable',
      'PostgreSQL is unavailable or restarting; retry after a moment',
      { sqlstate: code, store: 'postgres' },
      { cause: err },
    );
  if (code === '23505')
    return new AppError('already_exists', 'this record already exists', { sqlstate: code }, { cause: err });
  if (code === '23503')
    return new AppError(
      'not_found',
      'a record this refers to does not exist',
      { sqlstate: code },
      { cause: err },
    );
  if (code === '22003')
    return new AppError(
      'invalid_amount',
      'a number is out of the range its field can hold',
      { sqlstate: code },
      { cause: err },
    );
  if (code === '22021' || code === '22007' || code === '22P02')
    return new AppError(
      'invalid_request',
      'a value is not in the expected format or encoding',
      { sqlstate: code },
      { cause: err },
    );
  if (code === '57014')
    return new AppError(
      'store_unavailable',
      'PostgreSQL took too long to answer (statement timeout); retry after a moment',
      { sqlstate: code },
      { cause: err },
    );
  if (code === '23514')
    return new AppError(
      'internal',
      'a database invariant refused the write',
      { sqlstate: code },
      { cause: err },
    );
  if (code === '40001' || code === '40P01')
    return new AppError(
      'store_unavailable',
      code === '40P01'
        ? 'the operation conflicted with a concurrent one (deadlock); retry'
        : 'the operation conflicted with a concurrent one (serialization failure); retry',
      { sqlstate: code },
      { cause: err },
    );
  if (isNetworkError(err) || /Connection terminated|the database system is/i.test(message)) {
    return new AppError(
      'store_unavailable',
      'PostgreSQL is unavailable or restarting; retry after a moment',
      { store: 'postgres' },
      { cause: err },
    );
  }
  return err;
}

export async function pgHealth(pool: Pool): Promise<{ version: string; rttMs: number }> {
  const t0 = performance.now();
  const r = await pool.query<{ v: string }>('select version() as v');
  return { version: r.rows[0]?.v ?? '?', rttMs: performance.now() - t0 };
}
