// Which failures of a record batch mean "a store is unreachable, try the same batch again later" (kept in the
// queue, retried with backoff, without limit) rather than "something in the batch is wrong" (poison).
import { isAppError } from '../../platform/errors.js';
import { isMongoOutage } from '../../stores/mongo/bulk.js';
import { NETWORK_ERROR_CODES } from '../../stores/net-errors.js';

export function isTransientStoreError(err: unknown): boolean {
  if (isAppError(err)) return err.code === 'store_unavailable' || err.code === 'timeout';
  if (!(err instanceof Error)) return false;
  // MongoDB: unreachable, restarting, not primary, pool or topology closed, timeouts (also inside a bulk
  // write error or a cause chain).
  if (isMongoOutage(err)) return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (NETWORK_ERROR_CODES.has(code)) return true;
    // SQLSTATE classes 08 (connection), 53 (resources), 57P (operator intervention: shutdown, restart).
    if (/^(08|53|57P)/.test(code)) return true;
  }
  // pg pool errors without a code.
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
    err.message,
  );
}
