// The records stream's contracts without I/O: the batch envelope, lifecycle events as log events, and which
// failures count as a store outage (retried without limit) rather than poison.
import { describe, expect, it } from 'vitest';
import { AppError } from '../../platform/errors.js';
import { lifecycleLogEvent } from './lifecycle-log.js';
import { decodeRecordBatch, encodeRecordBatch } from './record-stream.contracts.js';
import { isTransientStoreError } from './record-stream.errors.js';
import { recordEvent } from './records.contracts.js';

const uuid = '0b7a4a4e-5d7e-4c1e-9a57-0d9f1b1f7c11';

describe('records stream contracts', () => {
  it('encodes serialized events into a v1 envelope and decodes it; refuses what breaks it', () => {
    const body = encodeRecordBatch([JSON.stringify({ a: 1 }), JSON.stringify({ b: [2] })]);
    expect(decodeRecordBatch(body)).toEqual({ batch: { v: 1, events: [{ a: 1 }, { b: [2] }] } });
    expect(decodeRecordBatch(Buffer.from('{'))).toEqual({ error: 'not JSON' });
    expect(decodeRecordBatch(Buffer.from('{"v":2,"events":[{}]}'))).toMatchObject({ error: /^v: / });
    expect(decodeRecordBatch(Buffer.from('{"v":1,"events":[]}'))).toMatchObject({ error: /^events: / });
  });

  it('turns a routing lifecycle event into a log event that passes the records contract', () => {
    const e = lifecycleLogEvent({
      v: 1,
      eventId: uuid,
      type: 'retry_scheduled',
      jobId: uuid,
      namespaceId: uuid,
      model: 'llama3-8b',
      environment: 'mainnet',
      attempt: 1,
      at: '2026-11-28T10:00:00.000Z',
      reason: 'node timed out',
    });
    expect(recordEvent.parse(e)).toMatchObject({
      type: 'log',
      eventId: `routing:${uuid}`,
      logType: 'routing',
      level: 'warn',
      message: 'job retry_scheduled: node timed out',
    });
  });

  it('treats unreachable stores as transient and everything else as possible poison', () => {
    const named = (name: string, message = 'x') => Object.assign(new Error(message), { name });
    expect(isTransientStoreError(new AppError('store_unavailable', 'down'))).toBe(true);
    expect(isTransientStoreError(named('MongoServerSelectionError'))).toBe(true);
    expect(isTransientStoreError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isTransientStoreError(Object.assign(new Error('admin shutdown'), { code: '57P01' }))).toBe(true);
    expect(isTransientStoreError(new AppError('invalid_request', 'bad'))).toBe(false);
    expect(isTransientStoreError(new AppError('internal', 'bug'))).toBe(false);
    expect(isTransientStoreError(new TypeError('cannot read properties of undefined'))).toBe(false);
  });
});
