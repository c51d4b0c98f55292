// Shared test harness: service URLs and per-test isolation (own PostgreSQL schema, Mongo database,
// Redis key prefix, RabbitMQ name prefix), each dropped on cleanup.
import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../src/config/config.js';
import { createLogger, type Logger } from '../src/platform/logger.js';
import { postgresMigrationsDir } from '../src/platform/paths.js';
import { migrate } from '../src/stores/postgres/migrator.js';
import { createPgPool, type Pool } from '../src/stores/postgres/pool.js';

export const baseConfig: Config = loadConfig({ ...process.env, NODE_ENV: 'test' });

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

export const testLog: Logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

export interface PgTestSchema {
  schema: string;
  pool: Pool;
  config: Config;
  /** Drops the schema and closes the pool. */
  drop(): Promise<void>;
}

/** A fresh, migrated schema of its own for one test file. */
export async function createPgTestSchema(
  opts: { poolSize?: number; migrate?: boolean } = {},
): Promise<PgTestSchema> {
  const schema = uniqueName('t');
  const config = Object.freeze({ ...baseConfig, POSTGRES_SCHEMA: schema });
  const pool = createPgPool({
    url: config.POSTGRES_URL,
    size: opts.poolSize ?? 8,
    schema,
    applicationName: `test-${schema}`,
  });
  await pool.query(`create schema ${schema}`);
  if (opts.migrate !== false) await migrate(pool, { dir: postgresMigrationsDir(), schema });
  return {
    schema,
    pool,
    config,
    drop: async () => {
      await pool.query(`drop schema ${schema} cascade`);
      await pool.end();
    },
  };
}
