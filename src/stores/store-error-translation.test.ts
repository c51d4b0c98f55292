// Each store's one translation, per driver error class: the typed StoreError (kind, catalogue code) it becomes,
// with the driver's error kept as its cause; an error that means a bug is passed through unchanged.
import { MaxRetriesPerRequestError } from 'ioredis/built/errors/index.js';
import { MongoNetworkError, MongoServerError } from 'mongodb';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { AppError } from '../platform/errors.js';
import { isStoreError, StoreError, type StoreErrorKind } from '../platform/store-error.js';
import { translateMongoError } from './mongo/bulk.js';
import { translatePgError } from './postgres/pg-errors.js';
import { translateAmqpError } from './rabbitmq/connection.js';
import { translateRedisError } from './redis/client.js';

function pgError(code: string, constraint?: string): pg.DatabaseError {
  const e = new pg.DatabaseError(`server says ${code}`, 0, 'error');
  e.code = code;
  e.constraint = constraint;
  return e;
}

describe('PostgreSQL (pg DatabaseError by SQLSTATE)', () => {
  const cases: Array<[string, StoreErrorKind, string]> = [
    ['23505', 'unique_violation', 'already_exists'],
    ['23503', 'foreign_key_violation', 'not_found'],
    ['23514', 'check_violation', 'internal'],
    ['22003', 'out_of_range', 'invalid_amount'],
    ['22P02', 'invalid_format', 'invalid_request'],
    ['22021', 'invalid_format', 'invalid_request'],
    ['40001', 'serialization_failure', 'store_unavailable'],
    ['40P01', 'deadlock', 'store_unavailable'],
    ['57014', 'statement_timeout', 'store_unavailable'],
    ['57P01', 'unavailable', 'store_unavailable'],
    ['08006', 'unavailable', 'store_unavailable'],
    ['53300', 'unavailable', 'store_unavailable'],
    ['53100', 'unavailable', 'store_unavailable'],
  ];
  it.each(cases)('%s becomes %s (%s)', (sqlstate, kind, code) => {
    const raw = pgError(sqlstate, 'some_constraint');
    const t = translatePgError(raw) as StoreError;
    expect(t).toBeInstanceOf(StoreError);
    expect([t.store, t.kind, t.code, t.cause]).toEqual(['postgres', kind, code, raw]);
    // Only a violation names its constraint (what a module maps to a domain error).
    expect(t.constraint).toBe(kind === 'unavailable' ? undefined : 'some_constraint');
    expect(t.details?.sqlstate).toBe(sqlstate);
    expect(t.message).not.toMatch(/server says/);
  });

  it('a terminated connection without a SQLSTATE is unavailable; bad SQL and AppErrors pass through', () => {
    expect(translatePgError(new Error('Connection terminated unexpectedly'))).toMatchObject({
      kind: 'unavailable',
      code: 'store_unavailable',
    });
    const bug = pgError('42P01');
    expect(translatePgError(bug)).toBe(bug);
    const app = new AppError('not_found', 'no such thing');
    expect(translatePgError(app)).toBe(app);
  });
});

describe('MongoDB, Redis and RabbitMQ', () => {
  it('a MongoServerError 11000 is a unique violation; a MongoNetworkError is unavailable; others pass', () => {
    const dup = new MongoServerError({ code: 11000, errmsg: 'E11000 duplicate key', ok: 0 });
    expect(translateMongoError(dup)).toMatchObject({
      store: 'mongo',
      kind: 'unique_violation',
      code: 'already_exists',
      details: { mongoCode: 11000 },
    });
    expect(isStoreError(translateMongoError(new MongoNetworkError('read ECONNRESET')), 'unavailable')).toBe(
      true,
    );
    const other = new MongoServerError({ code: 2, errmsg: 'BadValue', ok: 0 });
    expect(translateMongoError(other)).toBe(other);
  });

  it("ioredis's MaxRetriesPerRequestError and a LOADING reply are unavailable; a script error passes", () => {
    for (const raw of [new MaxRetriesPerRequestError(3), new Error('LOADING Redis is loading')])
      expect(translateRedisError(raw)).toMatchObject({ store: 'redis', kind: 'unavailable', cause: raw });
    const script = new Error('ERR hold_race');
    expect(translateRedisError(script)).toBe(script);
  });

  it("amqplib's IllegalOperationError and a 320 connection-forced are unavailable; a 404 passes", () => {
    // amqplib's IllegalOperationError (its module has no types): what a call on a dead channel throws.
    const illegal = Object.assign(new Error('Channel closed'), { name: 'IllegalOperationError' });
    const forced = Object.assign(new Error('CONNECTION_FORCED'), { code: 320 });
    for (const raw of [illegal, forced])
      expect(translateAmqpError(raw)).toMatchObject({ store: 'rabbitmq', kind: 'unavailable', cause: raw });
    const notFound = Object.assign(new Error('NOT_FOUND - no queue'), { code: 404 });
    expect(translateAmqpError(notFound)).toBe(notFound);
  });
});
