// Failure attribution of a delivery: only what the node did counts against it (no I/O).
import { describe, expect, it } from 'vitest';
import { AppError } from '../../platform/errors.js';
import { causeOf, DeliveryError, isNodeCause } from './jobs.attempt.js';

function maxRetriesError(): Error {
  // The shape ioredis throws when a command is dropped after its retries while Redis is unreachable.
  const err = new Error(
    'Reached the max retries per request limit (which is 3). Refer to "maxRetriesPerRequest" option for details.',
  );
  err.name = 'MaxRetriesPerRequestError';
  return err;
}

describe('causeOf', () => {
  it('a store failing under the delivery is a store_error, never the node', () => {
    for (const err of [
      maxRetriesError(),
      new AppError('store_unavailable', 'Redis is unavailable'),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' }),
    ]) {
      const cause = causeOf(err);
      expect(cause).toBe('store_error');
      expect(isNodeCause(cause as 'store_error')).toBe(false);
    }
  });

  it('the gateway causes keep their codes and an unknown error stays the node’s', () => {
    expect(causeOf(new DeliveryError('backbone_shutdown', 'stopping'))).toBe('backbone_shutdown');
    expect(causeOf(new Error('node 0xabc disconnected'))).toBe('node_disconnect');
    expect(causeOf(new Error('job abc timed out after 1000 ms'))).toBe('node_timeout');
    expect(causeOf(new Error('node 0xabc is not connected to any gateway'))).toBe('backbone_unreachable');
    expect(causeOf(new Error('job abc was already delivered to this node'))).toBe('duplicate_delivery');
    expect(causeOf(new Error('runtime exploded'))).toBe('node_error');
  });
});
