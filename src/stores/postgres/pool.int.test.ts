// The pool translates every query's failure at the store boundary, not only inside withTransaction: a unique
// violation from a plain pool.query (and from a checked-out client) arrives as a typed StoreError.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, type PgTestSchema } from '../../../test/harness.js';
import { StoreError } from '../../platform/store-error.js';

let db: PgTestSchema;
beforeAll(async () => {
  db = await createPgTestSchema({ migrate: false, poolSize: 2 });
  await db.pool.query(
    'create table parents (id int primary key, name text constraint parents_name_key unique)',
  );
  await db.pool.query('create table children (id int primary key, parent int references parents (id))');
  await db.pool.query(`insert into parents values (1, 'a')`);
});
afterAll(async () => {
  await db?.drop();
});

describe('createPgPool translates at the boundary', () => {
  it('a unique violation from a plain pool.query (no transaction) is a StoreError naming its constraint', async () => {
    const err = await db.pool.query(`insert into parents values (2, 'a')`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    const e = err as StoreError;
    expect([e.store, e.kind, e.code, e.status, e.constraint]).toEqual([
      'postgres',
      'unique_violation',
      'already_exists',
      409,
      'parents_name_key',
    ]);
    expect(e.details).toEqual({ sqlstate: '23505' });
    expect((e.cause as { code?: string }).code).toBe('23505'); // the driver's error stays the cause
  });

  it('a checked-out client translates too; a bug (bad SQL) stays the driver error', async () => {
    const client = await db.pool.connect();
    try {
      const fk = await client.query('insert into children values (1, 99)').catch((e: unknown) => e);
      expect(fk).toMatchObject({ kind: 'foreign_key_violation', code: 'not_found' });
      const bug = await client.query('select * from no_such_table').catch((e: unknown) => e);
      expect(bug).not.toBeInstanceOf(StoreError);
      expect((bug as { code?: string }).code).toBe('42P01');
    } finally {
      client.release();
    }
  });

  it('the callback form of pool.query gets the translated error as well', async () => {
    const err = await new Promise<unknown>((resolve) => {
      void db.pool.query(`insert into parents values (1, 'b')`, (e: Error) => resolve(e));
    });
    expect(err).toMatchObject({ kind: 'unique_violation', constraint: 'parents_pkey' });
  });
});
