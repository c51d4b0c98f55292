// Which failures of a record batch mean "a store is unreachable, try the same batch again later" (kept in the
// queue, retried with backoff, without limit) rather than "something in the batch is wrong" (poison).
import { isAppError } from '../../platform/errors.js';
import { classifyStoreError } from '../../stores/store-errors.js';

export function isTransientStoreError(err: unknown): boolean {
  if (isAppError(err)) return err.code === 'store_unavailable' || err.code === 'timeout';
  // A driver error that escaped its store's translation (e.g. from a GridFS stream or a raw cursor): the
  // store boundary's one classifier decides whether it is an outage.
  return classifyStoreError(err) !== undefined;
}
