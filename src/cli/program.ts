// The `rty` command tree; each command lives in commands/ and returns an exit code.
import { Command } from 'commander';
import type { CliContext } from './context.js';
import { runDoctor } from './commands/doctor.js';
import { runMigrate } from './commands/migrate.js';
import { runLedgerVerify } from './commands/ledger.js';
import { runRecordsTask } from './commands/records.js';

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
  const records = program.command('records').description('job records in MongoDB: retention and Space plan');
  records
    .command('sweep')
    .description('export → verify → delete records past each namespace retention, once, under the task lock')
    .action(async () => setExit(await runRecordsTask(ctx, 'sweep')));
  records
    .command('charge')
    .description("charge today's Space-plan storage of every namespace on a paid plan (idempotent per day)")
    .action(async () => setExit(await runRecordsTask(ctx, 'charge')));
  return program;
}
