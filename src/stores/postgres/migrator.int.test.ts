// Migrations against the real PostgreSQL: apply to an empty schema, no-op on re-run, dry run, forward-only.
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, type PgTestSchema } from '../../../test/harness.js';
import { postgresMigrationsDir } from '../../platform/paths.js';
import { migrate, readMigrations } from './migrator.js';

let db: PgTestSchema;
beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 2, migrate: false });
});
afterAll(async () => {
  await db.drop();
});

describe('postgres migrator', () => {
  it('applies every migration to an empty schema, then is a no-op', async () => {
    const all = await readMigrations(postgresMigrationsDir());
    expect(all.length).toBeGreaterThanOrEqual(2);
    const dry = await migrate(db.pool, { dir: postgresMigrationsDir(), schema: db.schema, dryRun: true });
    expect(dry.pending.map((m) => m.id)).toEqual(all.map((m) => m.id));
    expect(dry.pending[0]!.sql).toMatch(/create table accounts/);
    const tablesBefore = await db.pool.query(
      'select count(*)::int as n from pg_tables where schemaname = $1',
      [db.schema],
    );
    expect(tablesBefore.rows[0].n).toBe(0);

    const first = await migrate(db.pool, { dir: postgresMigrationsDir(), schema: db.schema });
    expect(first.applied).toEqual(all.map((m) => m.id));
    const tables = await db.pool.query<{ tablename: string }>(
      'select tablename from pg_tables where schemaname = $1',
      [db.schema],
    );
    expect(tables.rows.map((r) => r.tablename)).toEqual(
      expect.arrayContaining([
        'accounts',
        'namespaces',
        'api_keys',
        'ledger_entries',
        'credit_holds',
        'audit_log',
      ]),
    );

    const second = await migrate(db.pool, { dir: postgresMigrationsDir(), schema: db.schema });
    expect(second.applied).toEqual([]);
    const again = await migrate(db.pool, { dir: postgresMigrationsDir(), schema: db.schema, dryRun: true });
    expect(again.pending).toEqual([]);
  });

  it('concurrent runs apply each migration once (advisory lock)', async () => {
    const other = await createPgTestSchema({ poolSize: 4, migrate: false });
    try {
      const results = await Promise.all(
        [1, 2, 3].map(() => migrate(other.pool, { dir: postgresMigrationsDir(), schema: other.schema })),
      );
      const applied = results.flatMap((r) => r.applied);
      const all = await readMigrations(postgresMigrationsDir());
      expect(applied.sort()).toEqual(all.map((m) => m.id).sort());
    } finally {
      await other.drop();
    }
  });

  it('refuses an applied migration whose file changed, and rolls back a failing one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mig-'));
    const scratch = await createPgTestSchema({ poolSize: 2, migrate: false });
    try {
      await writeFile(join(dir, '0001_create_thing.sql'), 'create table thing (id int primary key);');
      await migrate(scratch.pool, { dir, schema: scratch.schema });
      await writeFile(join(dir, '0001_create_thing.sql'), 'create table thing (id bigint primary key);');
      await expect(migrate(scratch.pool, { dir, schema: scratch.schema })).rejects.toThrow(
        /changed after it was applied/,
      );
      await writeFile(join(dir, '0001_create_thing.sql'), 'create table thing (id int primary key);');
      await writeFile(
        join(dir, '0002_create_broken.sql'),
        'create table half (id int); select * from no_such_table;',
      );
      await expect(migrate(scratch.pool, { dir, schema: scratch.schema })).rejects.toThrow(
        /0002_create_broken failed/,
      );
      const half = await scratch.pool.query('select to_regclass($1) as t', [`${scratch.schema}.half`]);
      expect(half.rows[0].t).toBeNull();
    } finally {
      await scratch.drop();
      await rm(dir, { recursive: true });
    }
  });
});
