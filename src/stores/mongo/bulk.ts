// Idempotent bulk writes: unordered insertMany where a duplicate key (11000) means "already written".
import { MongoBulkWriteError, MongoServerError, type Collection, type Document } from 'mongodb';
import { AppError } from '../../platform/errors.js';

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

/** Driver errors become catalogue errors at the store boundary. */
export function translateMongoError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const name = (err as { name?: string } | null)?.name ?? '';
  const message = err instanceof Error ? err.message : String(err);
  if (
    /MongoNetwork|MongoServerSelection|MongoTopologyClosed|PoolClosed/.test(name) ||
    (name === 'MongoBulkWriteError' && /Topology is closed|not connected|connection/i.test(message))
  ) {
    return new AppError('store_unavailable', `MongoDB unavailable: ${message}`, undefined, { cause: err });
  }
  if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) {
    return new AppError('already_exists', message, { mongoCode: err.code }, { cause: err });
  }
  return err;
}
