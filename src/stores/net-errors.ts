// Socket-level failures shared by every driver (refused, reset, timed out, unreachable): a store that
// cannot be reached right now, which a caller should retry — never poison, never a 500.
/** The one list of socket error codes every store predicate uses. */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOTCONN',
  'ESHUTDOWN',
]);

const networkMessage =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|socket hang up|socket closed|connection (?:closed|terminated|timed? ?out|lost|reset)|timeout exceeded when trying to connect|not queryable/i;

/** True for a refused/reset/timed-out/unreachable socket, whatever the driver wrapped it in. */
export function isNetworkError(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 4) return false;
  const e = err as { code?: unknown; errno?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
  if (typeof e.code === 'string' && NETWORK_ERROR_CODES.has(e.code)) return true;
  if (typeof e.message === 'string' && networkMessage.test(e.message)) return true;
  // Node's happy-eyeballs connect (localhost -> ::1 and 127.0.0.1) fails with an AggregateError.
  if (Array.isArray(e.errors) && e.errors.some((x) => isNetworkError(x, depth + 1))) return true;
  return e.cause !== undefined && e.cause !== err && isNetworkError(e.cause, depth + 1);
}
