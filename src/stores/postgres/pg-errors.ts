// PostgreSQL's one driver-error translation (SQLSTATE → typed StoreError), and the wrapper that applies it to
// every query and connect of a pool made by createPgPool, so no caller above the store sees a pg error.
import { AppError } from '../../platform/errors.js';
import { StoreError, type StoreErrorKind } from '../../platform/store-error.js';
import { isNetworkError } from '../net-errors.js';

// 08xxx connection exceptions, 53xxx insufficient resources (too many connections, out of memory, disk full),
// 57P01-05 admin shutdown / crash shutdown / cannot connect now (starting up) / database dropped / idle session
// timeout, 25P03 idle-in-transaction timeout, 58030 I/O error: the server is restarting or overloaded, not the
// request wrong. All retryable.
const connectionLost = /^(08...|53...|57P0[1-5]|25P03|58030)$/;

const UNAVAILABLE = 'PostgreSQL is unavailable or restarting; retry after a moment';

/** The typed error of each SQLSTATE we name, with its public message (the driver's text stays in `cause`). */
const bySqlstate: Record<string, { kind: StoreErrorKind; message: string }> = {
  '23505': { kind: 'unique_violation', message: 'this record already exists' },
  '23503': { kind: 'foreign_key_violation', message: 'a record this refers to does not exist' },
  '23514': { kind: 'check_violation', message: 'a database invariant refused the write' },
  '22003': { kind: 'out_of_range', message: 'a number is out of the range its field can hold' },
  '22021': { kind: 'invalid_format', message: 'a value is not in the expected format or encoding' },
  '22007': { kind: 'invalid_format', message: 'a value is not in the expected format or encoding' },
  '22P02': { kind: 'invalid_format', message: 'a value is not in the expected format or encoding' },
  '57014': {
    kind: 'statement_timeout',
    message: 'PostgreSQL took too long to answer (statement timeout); retry after a moment',
  },
  '40001': {
    kind: 'serialization_failure',
    message: 'the operation conflicted with a concurrent one (serialization failure); retry',
  },
  '40P01': {
    kind: 'deadlock',
    message: 'the operation conflicted with a concurrent one (deadlock); retry',
  },
};

/** Maps a pg failure to a typed StoreError (or returns it unchanged: a bug, e.g. bad SQL); leaves AppErrors alone. */
export function translatePgError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const e = (err ?? {}) as { code?: unknown; constraint?: unknown };
  const code = typeof e.code === 'string' ? e.code : undefined;
  const constraint = typeof e.constraint === 'string' ? e.constraint : undefined;
  const message = err instanceof Error ? err.message : String(err);
  if (code && connectionLost.test(code))
    return new StoreError(
      { store: 'postgres', kind: 'unavailable' },
      UNAVAILABLE,
      { sqlstate: code, store: 'postgres' },
      { cause: err },
    );
  const known = code !== undefined ? bySqlstate[code] : undefined;
  if (known)
    return new StoreError(
      { store: 'postgres', kind: known.kind, constraint },
      known.message,
      { sqlstate: code },
      { cause: err },
    );
  if (isNetworkError(err) || /Connection terminated|the database system is/i.test(message))
    return new StoreError(
      { store: 'postgres', kind: 'unavailable' },
      UNAVAILABLE,
      { store: 'postgres' },
      { cause: err },
    );
  return err;
}

type AnyFn = (...args: unknown[]) => unknown;

/**
 * `fn` (pool.query, pool.connect, client.query) with its failure translated, in each of the driver's calling
 * forms: a node callback gets the translated error; a promise rejects with it; a Submittable (a cursor or a
 * stream, which reports on its own events) is passed through as it is.
 */
export function translatingErrors<F extends AnyFn>(fn: F, self: object): F {
  return function (...args: unknown[]): unknown {
    const last = args.at(-1);
    if (typeof last === 'function') {
      args[args.length - 1] = (err: unknown, ...rest: unknown[]) =>
        (last as AnyFn)(err ? translatePgError(err) : err, ...rest);
      return fn.apply(self, args);
    }
    if (typeof (args[0] as { submit?: unknown } | undefined)?.submit === 'function')
      return fn.apply(self, args);
    return (fn.apply(self, args) as Promise<unknown>).catch((err: unknown) => {
      throw translatePgError(err);
    });
  } as F;
}
