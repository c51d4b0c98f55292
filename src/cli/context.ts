// What every CLI command receives: the parsed config, a logger and an output stream for humans.
import type { Config } from '../config/config.js';
import type { Logger } from '../platform/logger.js';

export interface CliContext {
  config: Config;
  log: Logger;
  out: (line: string) => void;
}
