// Composition root of the `rty` CLI: reads config, builds the command tree, maps outcomes to exit codes.
import { loadConfig } from '../config/config.js';
import { createLogger } from '../platform/logger.js';
import { buildProgram } from '../cli/program.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn', { process: 'cli' });
  let exitCode = 0;
  const program = buildProgram(
    { config, log, out: (line) => process.stdout.write(`${line}\n`) },
    (c) => (exitCode = c),
  );
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode;
    if (typeof code === 'number') process.exit(code);
    process.stderr.write(`rty: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  process.exit(exitCode);
}

void main();
