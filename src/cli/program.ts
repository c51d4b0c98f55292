// The `rty` command tree; each command lives in commands/ and returns an exit code.
import { Command } from 'commander';
import type { CliContext } from './context.js';
import { runDoctor } from './commands/doctor.js';
import { runMigrate } from './commands/migrate.js';
import { runLedgerVerify } from './commands/ledger.js';
import {
  runQuarantineList,
  runQuarantinePurge,
  runQuarantineReplay,
  runQueueHealth,
  runQueuePrune,
  type QuarantineSelectionOptions,
} from './commands/queue.js';

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
  const queue = program.command('queue').description('job routing on RabbitMQ: health and quarantine');
  queue
    .command('health')
    .description('depth and consumers of every routing queue (passive declares), quarantine size')
    .action(async () => setExit(await runQueueHealth(ctx)));
  queue
    .command('prune')
    .description('delete lanes idle for ROUTING_LANE_IDLE_MS that are empty and unconsumed')
    .action(async () => setExit(await runQueuePrune(ctx)));
  const quarantine = queue.command('quarantine').description('jobs past their retry limit');
  const limit = (v: string) => Number.parseInt(v, 10);
  quarantine
    .command('list')
    .description('show quarantined jobs without removing them')
    .option('--limit <n>', 'at most this many', limit, 100)
    .action(async (o: { limit: number }) => setExit(await runQuarantineList(ctx, o)));
  const collect = (v: string, prev: string[] = []) => [...prev, v];
  for (const [name, description, run] of [
    ['replay', 'put jobs back into their lanes with a fresh attempt budget and TTL', runQuarantineReplay],
    ['purge', 'delete jobs from quarantine (a `purged` event each)', runQuarantinePurge],
  ] as const) {
    quarantine
      .command(name)
      .description(description)
      .option('--job <id>', 'a job id (repeatable)', collect)
      .option('--all', 'every quarantined job', false)
      .option('--limit <n>', 'examine at most this many messages', limit, 10_000)
      .action(async (o: QuarantineSelectionOptions) => setExit(await run(ctx, o)));
  }
  return program;
}
