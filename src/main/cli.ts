// Composition root of the `rty` CLI: reads config, builds the command tree, maps outcomes to exit codes.
import { CommanderError } from 'commander';
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
    // Commander reports its own parse errors (missing argument, unknown option or command, bad value) with exit code 1;
    // they are usage errors, exit 2 like every other usage error. Help and version exit 0.
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
    const code = (err as { exitCode?: number }).exitCode;
    if (typeof code === 'number') process.exit(code);
    process.stderr.write(`rty: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  process.exit(exitCode);
}

void main();
