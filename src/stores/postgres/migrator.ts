// Forward-only SQL migrations from migrations/postgres/NNNN_verb_noun.sql, applied once each under an advisory lock.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Pool } from './pool.js';

export interface Migration {
  id: string;
  sql: string;
  checksum: string;
}

export async function readMigrations(dir: string): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (f) => {
      const sql = await readFile(join(dir, f), 'utf8');
      return { id: f.replace(/\.sql$/, ''), sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

export interface MigrateResult {
  applied: string[];
  pending: Migration[];
}

/**
 * Applies pending migrations inside `schema` (created if missing), each in its own transaction,
 * serialized across processes by an advisory lock. A changed, already-applied file is an error.
 */
export async function migrate(
  pool: Pool,
  opts: { dir: string; schema: string; dryRun?: boolean },
): Promise<MigrateResult> {
  const migrations = await readMigrations(opts.dir);
  const client = await pool.connect();
  // A connection killed under the migration fails its query; the 'error' event must not kill the process.
  const onError = () => undefined;
  client.on('error', onError);
  const ident = `"${opts.schema.replace(/"/g, '""')}"`;
  try {
    await client.query('select pg_advisory_lock(hashtextextended($1, 0))', [`rty:migrate:${opts.schema}`]);
    try {
      const schemaExists = await client.query('select 1 from pg_namespace where nspname = $1', [opts.schema]);
      const tableExists =
        schemaExists.rowCount !== 0 &&
        (
          await client.query('select 1 from pg_tables where schemaname = $1 and tablename = $2', [
            opts.schema,
            'schema_migrations',
          ])
        ).rowCount !== 0;
      const done = new Map<string, string>();
      if (tableExists) {
        const rows = await client.query<{ id: string; checksum: string }>(
          `select id, checksum from ${ident}.schema_migrations`,
        );
        for (const r of rows.rows) done.set(r.id, r.checksum);
      }
      for (const m of migrations) {
        const seen = done.get(m.id);
        if (seen !== undefined && seen !== m.checksum) {
          throw new Error(
            `migration ${m.id} changed after it was applied; migrations are forward-only: add a new file instead`,
          );
        }
      }
      const pending = migrations.filter((m) => !done.has(m.id));
      if (opts.dryRun) return { applied: [], pending };
      await client.query(`create schema if not exists ${ident}`);
      await client.query(`set search_path to ${ident}`);
      await client.query(
        'create table if not exists schema_migrations (id text primary key, checksum text not null, applied_at timestamptz not null default now())',
      );
      const applied: string[] = [];
      for (const m of pending) {
        await client.query('begin');
        try {
          await client.query(m.sql);
          await client.query('insert into schema_migrations (id, checksum) values ($1, $2)', [
            m.id,
            m.checksum,
          ]);
          await client.query('commit');
        } catch (err) {
          await client.query('rollback');
          throw new Error(`migration ${m.id} failed: ${err instanceof Error ? err.message : String(err)}`, {
            cause: err,
          });
        }
        applied.push(m.id);
      }
      return { applied, pending: [] };
    } finally {
      await client.query('select pg_advisory_unlock(hashtextextended($1, 0))', [
        `rty:migrate:${opts.schema}`,
      ]);
    }
  } finally {
    await client.query('reset search_path').catch(() => undefined);
    client.off('error', onError);
    client.release();
  }
}
