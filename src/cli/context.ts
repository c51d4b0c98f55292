// What every CLI command receives: the parsed config, a logger and an output stream for humans; and the one way a
// command opens its PostgreSQL pool (the modules it needs come from the same factories as app/compose.ts).
import type { Config } from '../config/config.js';
import type { Logger } from '../platform/logger.js';
import { createPgPool, type Pool } from '../stores/postgres/pool.js';

export interface CliContext {
  config: Config;
  log: Logger;
  out: (line: string) => void;
}

/** A small pool on the configured database and schema, named `rty-<name>` (visible in pg_stat_activity). */
export function openCliPool(
  config: Pick<Config, 'POSTGRES_URL' | 'POSTGRES_SCHEMA'>,
  name: string,
  size = 2,
): Pool {
  return createPgPool({
    url: config.POSTGRES_URL,
    size,
    schema: config.POSTGRES_SCHEMA,
    applicationName: `rty-${name}`,
  });
}
