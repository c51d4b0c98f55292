// The `rty` command tree; each command lives in commands/ and returns an exit code.
import { Command } from 'commander';
import type { CliContext } from './context.js';
import { runDoctor } from './commands/doctor.js';
import { runMigrate } from './commands/migrate.js';
import { runLedgerVerify } from './commands/ledger.js';

export function buildProgram(ctx: CliContext, setExit: (code: number) => void): Command {
  const program = new Command('rty')
    .description('Backbone of the inference network: stores, ledger, routing, archive')
    .exitOverride();
  program
    .command('doctor')
    .description('check every store: reachable, version, round trip, capabilities')
    .action(async () => setExit(await runDoctor(ctx)));
  program
    .command('migrate')
    .description("apply PostgreSQL migrations (advisory-locked) and the other stores' setup; idempotent")
    .option('--dry-run', 'print what would be applied, apply nothing', false)
    .action(async (o: { dryRun: boolean }) => setExit(await runMigrate(ctx, { dryRun: o.dryRun })));
  const ledger = program.command('ledger').description('credit ledger tools');
  ledger
    .command('verify')
    .description('recompute all balances from entries and report mismatches')
    .action(async () => setExit(await runLedgerVerify(ctx)));
  return program;
}
