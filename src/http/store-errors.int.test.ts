// Store errors as the API shows them, from errors the real drivers raise against the real servers (and against a
// closed loopback port for "unreachable"): catalogue codes, the field to change, 503 for outages, no driver text.
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, type PgTestSchema } from '../../test/harness.js';
import { AppError } from '../platform/errors.js';
import { StoreError } from '../platform/store-error.js';
import { translatePgError } from '../stores/postgres/pool.js';
import { isStoreUnavailable, publicErrorOf } from './store-errors.js';

const DRIVER_TEXT =
  /violates|duplicate key|invalid byte sequence|unsupported Unicode|ECONNREFUSED|127\.0\.0\.1|syntax|constraint|relation|SQLSTATE|stack/i;

let db: PgTestSchema;

/** The driver's own error under the pool's translation (a bug such as bad SQL is not translated). */
const driverErrorOf = (err: unknown): unknown => (err instanceof StoreError ? err.cause : err);

async function pgErrorOf(sql: string, params: unknown[] = []): Promise<unknown> {
  try {
    await db.pool.query(sql, params);
  } catch (err) {
    return driverErrorOf(err);
  }
  throw new Error(`expected ${sql} to fail`);
}

/** The public error, checked twice: from the raw driver error and from the store boundary's translation. */
function bothWays(raw: unknown): AppError[] {
  const direct = publicErrorOf(raw);
  const viaBoundary = publicErrorOf(translatePgError(raw));
  expect(direct).toBeInstanceOf(AppError);
  expect(viaBoundary).toBeInstanceOf(AppError);
  for (const e of [direct!, viaBoundary!]) expect(e.message).not.toMatch(DRIVER_TEXT);
  return [direct!, viaBoundary!];
}

beforeAll(async () => {
  db = await createPgTestSchema({ migrate: false, poolSize: 2 });
  await db.pool.query('create table people (id int primary key, email text unique, doc jsonb)');
  await db.pool.query(`insert into people values (1, 'a@example.test', '{}')`);
});
afterAll(async () => {
  await db?.drop();
});

describe('PostgreSQL errors', () => {
  it('a unique violation is a 409 naming the column, without the constraint text', async () => {
    const raw = await pgErrorOf(`insert into people values (2, 'a@example.test', '{}')`);
    expect(String((raw as Error).message)).toMatch(/duplicate key/); // the driver's own wording…
    for (const e of bothWays(raw)) {
      expect([e.code, e.status, e.details?.param]).toEqual(['already_exists', 409, 'email']);
      expect(e.message).toMatch(/email/);
    }
  });

  it('NUL in text (22021) and in jsonb (22P05) are 400s that say what to remove', async () => {
    const text = await pgErrorOf('insert into people values (3, $1, null)', ['x\u0000y']);
    const json = await pgErrorOf(`insert into people values (4, null, '{"a":"\\u0000"}'::jsonb)`);
    expect((text as { code: string }).code).toBe('22021');
    expect((json as { code: string }).code).toBe('22P05');
    for (const raw of [text, json])
      for (const e of bothWays(raw)) {
        expect([e.code, e.status]).toEqual(['invalid_request', 400]);
        expect(e.message).toMatch(/NUL/);
      }
  });

  it('a bad uuid (22P02) is a 400 naming the type; an unknown failure is a 500 without the SQL text', async () => {
    const bad = await pgErrorOf(`select $1::uuid`, ['not-a-uuid']);
    for (const e of bothWays(bad)) {
      expect(e.status).toBe(400);
      expect(e.message).toMatch(/uuid/);
    }
    const unknown = await pgErrorOf('select * from no_such_table');
    const e = publicErrorOf(unknown)!;
    expect(e.status).toBe(500);
    expect(e.message).not.toMatch(DRIVER_TEXT);
  });

  it('an unreachable server is a 503 with Retry-After', async () => {
    const pool = new pg.Pool({
      connectionString: 'postgres://postgres@127.0.0.1:1/x',
      connectionTimeoutMillis: 2000,
    });
    const raw = await pool.query('select 1').then(
      () => undefined,
      (err: unknown) => err,
    );
    await pool.end();
    expect(isStoreUnavailable(raw)).toBe(true);
    const [direct, viaBoundary] = bothWays(raw);
    for (const e of [direct!, viaBoundary!])
      expect([e.code, e.status, (e.details?.headers as Record<string, string>)['retry-after']]).toEqual([
        'store_unavailable',
        503,
        '1',
      ]);
    expect(direct!.message).toMatch(/unavailable/);
    // A bare socket error does not say which store it came from; the store boundary's wrapper does.
    const wrapped = publicErrorOf(
      new AppError('store_unavailable', `PostgreSQL unavailable: ${(raw as Error).message}`, undefined, {
        cause: raw,
      }),
    )!;
    expect(wrapped.message).toMatch(/^PostgreSQL is unavailable/);
    expect(wrapped.message).not.toMatch(DRIVER_TEXT);
  });
});

describe('PostgreSQL retryable failures that are not outages', () => {
  it('a statement timeout (57014) is a retryable 503 worded as a timeout, not "unavailable or restarting"', async () => {
    const client = await db.pool.connect();
    let raw: unknown;
    try {
      await client.query("set statement_timeout = '50ms'");
      raw = await client.query('select pg_sleep(2)').then(
        () => undefined,
        (err: unknown) => driverErrorOf(err),
      );
      await client.query('set statement_timeout = 0');
    } finally {
      client.release();
    }
    expect((raw as { code?: string }).code).toBe('57014');
    for (const e of bothWays(raw)) {
      expect([e.code, e.status, e.retryable]).toEqual(['store_unavailable', 503, true]);
      expect((e.details?.headers as Record<string, string>)['retry-after']).toBe('1');
      expect(e.message).toMatch(/took too long/);
      expect(e.message).not.toMatch(/unavailable|restarting/);
    }
  });

  it('a deadlock (40P01) is a retryable 503 worded as a conflict with a concurrent request', async () => {
    await db.pool.query(`insert into people values (2, 'b@example.test', '{}') on conflict do nothing`);
    const [a, b] = [await db.pool.connect(), await db.pool.connect()];
    try {
      await a.query('begin');
      await b.query('begin');
      await a.query('update people set doc = doc where id = 1');
      await b.query('update people set doc = doc where id = 2');
      // Each now waits for the other's row: PostgreSQL's deadlock detector fails one of them.
      const results = await Promise.allSettled([
        a.query('update people set doc = doc where id = 2'),
        b.query('update people set doc = doc where id = 1'),
      ]);
      const raw = driverErrorOf(results.find((r) => r.status === 'rejected')?.reason) as
        | { code?: string }
        | undefined;
      expect(raw?.code).toBe('40P01');
      for (const e of bothWays(raw)) {
        expect([e.code, e.status, e.retryable]).toEqual(['store_unavailable', 503, true]);
        expect(e.message).toMatch(/conflicted with a concurrent one \(deadlock\)/);
        expect(e.message).not.toMatch(/unavailable|restarting/);
      }
    } finally {
      await a.query('rollback').catch(() => undefined);
      await b.query('rollback').catch(() => undefined);
      a.release();
      b.release();
    }
  });
});

describe('Redis and MongoDB errors', () => {
  it('an unreachable Redis is a 503 naming Redis', async () => {
    const redis = new Redis('redis://127.0.0.1:1', {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    redis.on('error', () => undefined);
    const raw = await redis.get('k').then(
      () => undefined,
      (err: unknown) => err,
    );
    redis.disconnect();
    const e = publicErrorOf(raw)!;
    expect([e.code, e.status]).toEqual(['store_unavailable', 503]);
    expect(e.message).toMatch(/Redis/);
    expect(e.message).not.toMatch(DRIVER_TEXT);
  });

  it('an unreachable MongoDB is a 503 naming MongoDB', async () => {
    const client = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 300 });
    const raw = await client
      .db('x')
      .collection('y')
      .findOne({})
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    await client.close();
    const e = publicErrorOf(raw)!;
    expect([e.code, e.status]).toEqual(['store_unavailable', 503]);
    expect(e.message).toMatch(/MongoDB/);
    expect(e.message).not.toMatch(DRIVER_TEXT);
  });

  it('leaves catalogue errors without driver causes as they are', () => {
    expect(publicErrorOf(new AppError('not_found', 'no job x'))).toBeUndefined();
    const conflict = publicErrorOf(
      new AppError('idempotency_conflict', 'reserve:123 was already used for a different hold', {
        idemKey: 'reserve:123',
      }),
    )!;
    expect(conflict.code).toBe('idempotency_conflict');
    expect(conflict.message).toMatch(/Idempotency-Key/);
    expect(conflict.message).not.toMatch(/reserve:/);
  });
});
