// PostgreSQL pool (every query's failure translated at this boundary), transactions, advisory locks. Nothing
// domain-specific.
import pg from 'pg';
import { AppError } from '../../platform/errors.js';
import { translatePgError, translatingErrors } from './pg-errors.js';

export { translatePgError };

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

/** A client whose every query fails with a translated error (pool.query runs on these clients too). */
class TranslatingClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    this.query = translatingErrors(pg.Client.prototype.query, this);
  }
}

/**
 * A pool whose every query, connect and checked-out client's query fails with a typed StoreError (unique
 * violation, unavailable, …) or, for a bug such as bad SQL, with the driver's error: one translation for every
 * caller, inside a transaction or not.
 */
export function createPgPool(opts: PgPoolOptions): Pool {
  const pool = new pg.Pool({
    Client: TranslatingClient,
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
  // pool.query reaches its client through this.connect, so its connect failures are translated here too.
  pool.query = translatingErrors(pool.query, pool);
  pool.connect = translatingErrors(pool.connect, pool);
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

export async function pgHealth(pool: Pool): Promise<{ version: string; rttMs: number }> {
  const t0 = performance.now();
  const r = await pool.query<{ v: string }>('select version() as v');
  return { version: r.rows[0]?.v ?? '?', rttMs: performance.now() - t0 };
}
