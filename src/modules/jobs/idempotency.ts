// Idempotency keys: a client's key maps to one job id per namespace, so a retried submission finds the first job.
import { createHash } from 'node:crypto';
import { AppError } from '../../platform/errors.js';

const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** A UUID (version 8, RFC 9562 custom) derived from the namespace and the key; the same pair gives the same id. */
export function jobIdForIdempotencyKey(namespaceId: string, key: string): string {
  if (!KEY_PATTERN.test(key))
    throw new AppError('invalid_request', 'Idempotency-Key must be 1-255 printable ASCII characters');
  const h = createHash('sha256').update(`rty-job:${namespaceId}:${key}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}
