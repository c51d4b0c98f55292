// One classifier for a failure from any store client (each driver's predicate lives at its store boundary), for surfaces that catch unknown errors (the HTTP error
// handler, background loops): unreachable / timed out / restarting becomes a retryable `store_unavailable`.
import { AppError } from '../platform/errors.js';
import { isMongoOutage } from './mongo/bulk.js';
import { isNetworkError } from './net-errors.js';
import { translatePgError } from './postgres/pool.js';
import { translateAmqpError } from './rabbitmq/connection.js';
import { translateRedisError } from './redis/client.js';

/** The catalogue error for a store outage, or undefined when `err` is not one (a bug or a bad request). */
export function classifyStoreError(err: unknown): AppError | undefined {
  if (err instanceof AppError) return err.code === 'store_unavailable' ? err : undefined;
  for (const translate of [translatePgError, translateRedisError, translateAmqpError]) {
    const t = translate(err);
    if (t instanceof AppError && t.code === 'store_unavailable') return t;
  }
  if (isMongoOutage(err))
    return new AppError(
      'store_unavailable',
      'MongoDB is unavailable or restarting; retry after a moment',
      { store: 'mongo' },
      { cause: err },
    );
  if (isNetworkError(err))
    return new AppError(
      'store_unavailable',
      'a storage service is unreachable; retry after a moment',
      undefined,
      { cause: err },
    );
  return undefined;
}
