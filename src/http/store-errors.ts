// Store and driver errors as the API shows them (the catalogue wording; which errors are outages is decided by
// classifyStoreError at the store boundary): a catalogue error whose message says what to change, never the
// driver's own text (SQL, constraint wording, addresses). Unreachable or restarting stores are 503 + Retry-After.
import { AppError, isAppError } from '../platform/errors.js';
import { classifyStoreError } from '../stores/store-errors.js';

type Raw = {
  name?: string;
  code?: unknown;
  message?: string;
  severity?: string;
  detail?: string;
  table?: string;
  column?: string;
  constraint?: string;
  cause?: unknown;
  errno?: unknown;
  syscall?: string;
  details?: Record<string, unknown>;
};

const asRaw = (e: unknown): Raw => (e !== null && typeof e === 'object' ? (e as Raw) : {});

/** A PostgreSQL server error (pg's DatabaseError): a five-character SQLSTATE and a severity. */
function isPgError(e: Raw): boolean {
  return typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string';
}

function storeNameOf(e: Raw): string {
  const n = `${e.name ?? ''} ${e.message ?? ''}`;
  if (isPgError(e) || /PostgreSQL|Connection terminated|timeout exceeded when trying to connect/.test(n))
    return 'PostgreSQL';
  if (/Mongo/.test(n)) return 'MongoDB';
  if (/Redis|MaxRetriesPerRequest|Stream isn't writeable|Command timed out|^Reply/.test(n)) return 'Redis';
  if (/RabbitMQ|Channel closed|IllegalOperation/.test(n)) return 'RabbitMQ';
  return 'a storage service';
}

function unavailable(store: string, cause: unknown): AppError {
  return new AppError(
    'store_unavailable',
    `${store} is unavailable or restarting; retry the request after Retry-After seconds`,
    { headers: { 'retry-after': '1' } },
    { cause },
  );
}

/**
 * PostgreSQL failures that are retryable but not an outage: a statement timeout (57014) and a serialization
 * failure or deadlock (40001, 40P01). Still a 503 with Retry-After (retrying is right), worded for what it is.
 */
const pgRetryWording: Record<string, string> = {
  '57014':
    'PostgreSQL took too long to answer (statement timeout); retry the request after Retry-After seconds',
  '40001':
    'the request conflicted with a concurrent one (serialization failure); retry the request after Retry-After seconds',
  '40P01':
    'the request conflicted with a concurrent one (deadlock); retry the request after Retry-After seconds',
};

function pgRetryable(code: string, cause: unknown): AppError {
  return new AppError(
    'store_unavailable',
    pgRetryWording[code]!,
    { headers: { 'retry-after': '1' } },
    { cause },
  );
}

/** The SQLSTATE of a PostgreSQL error or of a store-boundary AppError wrapping one. */
function sqlstateOf(err: unknown): string | undefined {
  const e = asRaw(err);
  if (isPgError(e)) return e.code as string;
  const d = isAppError(err) ? err.details : undefined;
  if (typeof d?.sqlstate === 'string') return d.sqlstate;
  return isAppError(err) && isPgError(asRaw(err.cause)) ? (asRaw(err.cause).code as string) : undefined;
}

/**
 * True for an error that means a store could not be reached or is restarting (not the request's fault): the
 * store boundary's one classifier decides (each driver's predicate and the shared socket-code list live there).
 */
export function isStoreUnavailable(err: unknown): boolean {
  return classifyStoreError(err) !== undefined;
}

const singular = (table: string | undefined) => (table ?? 'record').replace(/s$/, '').replaceAll('_', ' ');

/** The columns of a unique or foreign-key violation (`Key (email)=(…)`), without the value. */
function columnsOf(e: Raw): string | undefined {
  const m = /^Key \(([^)]+)\)=/.exec(e.detail ?? '');
  return m?.[1]?.replaceAll(' ', '');
}

function pgToCatalogue(e: Raw, cause: unknown): AppError {
  const code = e.code as string;
  if (code in pgRetryWording) return pgRetryable(code, cause);
  if (isStoreUnavailable(e)) return unavailable('PostgreSQL', cause);
  const cols = columnsOf(e) ?? e.column;
  const param = cols ? { param: cols } : undefined;
  switch (code) {
    case '23505':
      return new AppError(
        'already_exists',
        cols
          ? `another ${singular(e.table)} already has this ${cols}; use a different ${cols}`
          : `this ${singular(e.table)} already exists`,
        param,
        { cause },
      );
    case '23503':
      return new AppError(
        'not_found',
        `the ${cols ?? 'object'} this refers to does not exist; check the id`,
        param,
        { cause },
      );
    case '23502':
      return new AppError('invalid_request', `${cols ?? 'a required field'} is required`, param, { cause });
    case '23514':
      return new AppError(
        'invalid_request',
        `a value is outside what it may be (rule ${e.constraint ?? 'check'}); change it`,
        undefined,
        { cause },
      );
    case '22021':
    case '22P05':
      return new AppError(
        'invalid_request',
        'a text value holds a NUL character or bytes that are not UTF-8; remove them',
        undefined,
        { cause },
      );
    case '22001':
      return new AppError(
        'invalid_request',
        'a text value is longer than its field allows; shorten it',
        param,
        {
          cause,
        },
      );
    case '22003':
      return new AppError('invalid_amount', 'a number is out of the range its field can hold', param, {
        cause,
      });
    case '22P02':
    case '22007':
    case '22008': {
      const type = /for type (\w+)/.exec(e.message ?? '')?.[1];
      return new AppError(
        'invalid_request',
        `a value is not in the expected format${type ? ` (${type})` : ''}; check the ids, dates and numbers sent`,
        undefined,
        { cause },
      );
    }
    default:
      return new AppError('internal', 'internal error: the database refused the operation', undefined, {
        cause,
      });
  }
}

const idemWhat: Record<string, string> = {
  reserve:
    'this Idempotency-Key was already used for a request with another body or cost; send a new Idempotency-Key',
  topup: 'this idempotencyKey was already used for a top-up of another amount; use a new idempotencyKey',
  bonus: 'this idempotency key was already used for a bonus of another amount; use a new key',
  payout: 'this idempotency key was already used for a payout of another amount; use a new key',
  storage_charge: 'this storage charge was already recorded with another amount',
};

/**
 * The error the API shows for `err`: a translated catalogue error when `err` is (or wraps) a store or driver
 * error or carries internal wording, else undefined (send `err` as it is, or treat it as unexpected).
 */
export function publicErrorOf(err: unknown): AppError | undefined {
  const e = asRaw(err);
  if (isAppError(err)) {
    const d = err.details ?? {};
    if (err.code === 'idempotency_conflict' && typeof d.idemKey === 'string') {
      const kind = d.idemKey.split(':')[0] ?? '';
      return new AppError(
        'idempotency_conflict',
        idemWhat[kind] ?? 'this idempotency key was already used for another request; use a new key',
        undefined,
        {
          cause: err,
        },
      );
    }
    const cause = asRaw(err.cause);
    const fromDriver = d.sqlstate !== undefined || d.mongoCode !== undefined || err.cause !== undefined;
    if (!fromDriver) return undefined;
    const sqlstate = sqlstateOf(err);
    if (err.code === 'store_unavailable' && sqlstate !== undefined && sqlstate in pgRetryWording)
      return pgRetryable(sqlstate, err);
    if (err.code === 'store_unavailable')
      return unavailable(storeNameOf({ ...cause, message: err.message }), err);
    if (isPgError(cause)) {
      const t = pgToCatalogue(cause, err);
      // Keep the catalogue code the store boundary chose when it is more precise than the generic mapping.
      return t.code === 'internal' ? new AppError(err.code, t.message, undefined, { cause: err }) : t;
    }
    if (d.mongoCode === 11000 || err.code === 'already_exists')
      return new AppError('already_exists', 'this record already exists', undefined, { cause: err });
    return undefined;
  }
  if (isPgError(e)) return pgToCatalogue(e, err);
  if (isStoreUnavailable(err)) return unavailable(storeNameOf(e), err);
  if (e.name === 'MongoServerError' || e.name === 'MongoBulkWriteError') {
    if (e.code === 11000)
      return new AppError('already_exists', 'this record already exists', undefined, { cause: err });
    return new AppError('internal', 'internal error: the document store refused the operation', undefined, {
      cause: err,
    });
  }
  if (e.name === 'ReplyError')
    return new AppError('internal', 'internal error: the live-state store refused the operation', undefined, {
      cause: err,
    });
  if (err instanceof RangeError && /call stack/.test(err.message))
    return new AppError('invalid_request', 'the request is nested too deeply; flatten it', undefined, {
      cause: err,
    });
  return undefined;
}
