// Idempotent bulk writes: unordered insertMany where a duplicate key (11000) means "already written".
import { MongoBulkWriteError, MongoServerError, type Collection, type Document } from 'mongodb';
import { AppError } from '../../platform/errors.js';
import { StoreError } from '../../platform/store-error.js';
import { NETWORK_ERROR_CODES } from '../net-errors.js';

export const DUPLICATE_KEY = 11000;

export interface InsertOutcome {
  /** Indexes (into the input array) of documents that were already present. */
  duplicates: Set<number>;
  inserted: number;
}

/**
 * Inserts every document whose _id is not there yet; documents already present are reported, not errors.
 * Any other write error fails the call (after the others were written; a retry is safe).
 */
export async function insertManyIdempotent<T extends Document>(
  collection: Collection<T>,
  docs: T[],
): Promise<InsertOutcome> {
  if (docs.length === 0) return { duplicates: new Set(), inserted: 0 };
  try {
    // The driver's types want OptionalUnlessRequiredId; our documents always carry a deterministic _id.
    const r = await collection.insertMany(docs as never[], { ordered: false });
    return { duplicates: new Set(), inserted: r.insertedCount };
  } catch (err) {
    if (err instanceof MongoBulkWriteError) {
      const errors = (Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors]).filter(
        (e) => e !== undefined,
      );
      const other = errors.find((e) => e.code !== DUPLICATE_KEY);
      // No write errors at all: a top-level failure (e.g. "Topology is closed" from a client whose server
      // went away) that says nothing was written — never report it as written.
      if (other || errors.length === 0) throw translateMongoError(err);
      return {
        duplicates: new Set(errors.map((e) => e.index)),
        inserted: docs.length - errors.length,
      };
    }
    throw translateMongoError(err);
  }
}

/** Inserts one document; returns false when its _id already exists. */
export async function insertOneIdempotent<T extends Document>(
  collection: Collection<T>,
  doc: T,
): Promise<boolean> {
  try {
    await collection.insertOne(doc as never);
    return true;
  } catch (err) {
    if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) return false;
    throw translateMongoError(err);
  }
}

// An outage, not a fault of what was written: the server is unreachable, restarting, not primary, or the
// client's pool/topology is closed or timed out. Such an error is retried, never counted against the data.
const OUTAGE_ERROR_NAMES = new Set([
  'MongoNetworkError',
  'MongoNetworkTimeoutError',
  'MongoServerSelectionError',
  'MongoNotConnectedError',
  'MongoTopologyClosedError',
  'MongoServerClosedError',
  'MongoClientClosedError',
  'MongoPoolClosedError',
  'MongoPoolClearedError',
  'MongoWaitQueueTimeoutError',
  'MongoOperationTimeoutError',
  'MongoStalePrimaryError',
  'MongoWriteConcernError',
]);
const OUTAGE_LABELS = new Set([
  'RetryableWriteError',
  'ResetPool',
  'TransientTransactionError',
  'SystemOverloadedError',
]);
/** Server codes of a server that cannot take the write now (MONGODB_ERROR_CODES of the driver). */
const OUTAGE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
  10058, // LegacyNotPrimary
  64, // WriteConcernTimeout
  133, // FailedToSatisfyReadPreference
  50, // MaxTimeMSExpired: the server was too slow for this write, not the document's fault
  112, // WriteConflict: a concurrent write won; the same write succeeds when retried
]);
// What a bulk write that wrapped a driver error says (its name is MongoBulkWriteError whatever the cause).
const OUTAGE_MESSAGE =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|connection (\d+ )?to .* (closed|timed out)|connection (pool )?(was )?(closed|cleared)|Topology is closed|Server is closed|not connected|Server selection timed out|not primary|node is recovering|shutdown in progress|interrupted at shutdown|socket hang up/i;

/** True when `err` (a driver error, possibly wrapped in a bulk write error or a cause chain) is an outage. */
export function isMongoOutage(err: unknown, depth = 0): boolean {
  if (depth > 4 || typeof err !== 'object' || err === null) return false;
  const e = err as {
    name?: unknown;
    code?: unknown;
    message?: unknown;
    cause?: unknown;
    writeErrors?: unknown;
    hasErrorLabel?: (label: string) => boolean;
    errorLabels?: unknown;
  };
  const name = typeof e.name === 'string' ? e.name : '';
  if (OUTAGE_ERROR_NAMES.has(name)) return true;
  if (typeof e.hasErrorLabel === 'function' && [...OUTAGE_LABELS].some((l) => e.hasErrorLabel!(l)))
    return true;
  if (Array.isArray(e.errorLabels) && e.errorLabels.some((l) => OUTAGE_LABELS.has(String(l)))) return true;
  if (typeof e.code === 'number' && OUTAGE_CODES.has(e.code)) return true;
  if (typeof e.code === 'string' && NETWORK_ERROR_CODES.has(e.code)) return true;
  // A bulk write failed as a whole (no per-document write error): the cause is in its message.
  const perDoc = Array.isArray(e.writeErrors) && e.writeErrors.length > 0;
  if (
    name === 'MongoBulkWriteError' &&
    !perDoc &&
    typeof e.message === 'string' &&
    OUTAGE_MESSAGE.test(e.message)
  )
    return true;
  return e.cause !== undefined && isMongoOutage(e.cause, depth + 1);
}

/** MongoDB's one driver-error translation: an outage or a duplicate key becomes a typed StoreError. */
export function translateMongoError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (isMongoOutage(err))
    return new StoreError(
      { store: 'mongo', kind: 'unavailable' },
      `MongoDB unavailable: ${message}`,
      undefined,
      { cause: err },
    );
  if (err instanceof MongoServerError && err.code === DUPLICATE_KEY)
    return new StoreError(
      { store: 'mongo', kind: 'unique_violation' },
      message,
      { mongoCode: DUPLICATE_KEY },
      { cause: err },
    );
  return err;
}
