// The one reader of process.env: parses every setting once into a frozen, typed Config.
import { z } from 'zod';

const DEV_PEPPER = 'dev-only-pepper-change-me';

const intFrom = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);

export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  POSTGRES_URL: z.string().url().default('postgres://postgres@127.0.0.1:5432/rty'),
  POSTGRES_POOL_SIZE: intFrom(8, 1),
  POSTGRES_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]*$/, 'a lower-case SQL identifier')
    .default('public'),
  MONGO_URL: z
    .string()
    .regex(/^mongodb(\+srv)?:\/\//, 'a mongodb:// URL')
    .default('mongodb://127.0.0.1:27017/'),
  MONGO_DB: z.string().min(1).default('rty'),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'a redis:// URL')
    .default('redis://127.0.0.1:6379'),
  REDIS_KEY_PREFIX: z.string().default('rty:'),
  AMQP_URL: z
    .string()
    .regex(/^amqps?:\/\//, 'an amqp:// URL')
    .default('amqp://guest:guest@127.0.0.1:5672'),

  /** Group commit: how long a ledger operation may wait for others to share its transaction. */
  LEDGER_BATCH_MAX_WAIT_MS: intFrom(2),
  LEDGER_BATCH_MAX_SIZE: intFrom(500, 1),
  /** Concurrent group-commit transactions (each holds one pool connection). */
  LEDGER_BATCH_CONCURRENCY: intFrom(4, 1),
  /** A reservation not settled or voided within this time is released by the sweeper. */
  LEDGER_HOLD_TIMEOUT_MS: intFrom(15 * 60 * 1000, 1000),
  /** Server-side pepper mixed into API key hashes (a leaked database alone cannot check guesses). */
  API_KEY_PEPPER: z.string().min(16).default(DEV_PEPPER),

  // --- records (MongoDB job documents and logs, retention, Space plan) ---
  /** Retention of a namespace without a paid plan, and the period it falls back to when a plan lapses. */
  RECORDS_DEFAULT_RETENTION_DAYS: intFrom(7, 1),
  /** String values larger than this leave the document for the blob store (GridFS), referenced by id + hash. */
  RECORDS_LARGE_PAYLOAD_BYTES: intFrom(1024 * 1024, 1024),
  /** An event document (after large payloads left it) above this size is refused; a job document holds two. */
  RECORDS_MAX_DOCUMENT_BYTES: intFrom(4 * 1024 * 1024, 4096),
  /** Cold storage directory for retention exports (gzip'd JSONL + manifest). */
  RECORDS_EXPORT_DIR: z.string().min(1).default('archive/records'),
  /** Documents per export file. */
  RECORDS_EXPORT_FILE_MAX_DOCS: intFrom(50_000, 1),
  /** Documents deleted per delete batch of a retention run. */
  RECORDS_DELETE_BATCH_SIZE: intFrom(1000, 1),
  /** TTL safety net (only where the server has TTL indexes): beyond the longest plan. */
  RECORDS_TTL_SAFETY_DAYS: intFrom(400, 1),
  /** How long a namespace keeps its paid retention after a storage charge fails. */
  RECORDS_PLAN_GRACE_MS: intFrom(3 * 24 * 3600 * 1000, 0),
  RECORDS_RETENTION_INTERVAL_MS: intFrom(15 * 60 * 1000, 1000),
});

export type Config = Readonly<z.infer<typeof configSchema>>;

/** Parses the environment (or overrides) once; a bad value fails with the variable to set. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = configSchema
    .refine((c) => c.NODE_ENV !== 'production' || c.API_KEY_PEPPER !== DEV_PEPPER, {
      path: ['API_KEY_PEPPER'],
      message: 'must be set to a secret of at least 16 characters in production',
    })
    .safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map(
      (i) => `  ${i.path.join('.')}: ${i.message} (got ${JSON.stringify(env[String(i.path[0])])})`,
    );
    throw new Error(`invalid configuration; set these environment variables:\n${lines.join('\n')}`);
  }
  return Object.freeze(parsed.data);
}
