// The `rty` command tree; each command lives in commands/ and returns an exit code.
import { Command } from 'commander';
import { ENVIRONMENTS } from '../config/vocabulary.js';
import type { CliContext } from './context.js';
import { runDoctor } from './commands/doctor.js';
import { runMigrate } from './commands/migrate.js';
import { runLedgerVerify } from './commands/ledger.js';
import { runAuditVerify } from './commands/audit.js';
import { runRollup, runRollupPrune, runRollupVerify } from './commands/rollup.js';
import {
  runSnapshotCreate,
  runSnapshotFreeze,
  runSnapshotList,
  runSnapshotProve,
  runSnapshotRestore,
  runSnapshotRoots,
  runSnapshotVerifyChain,
  runSnapshotVerify,
  runSnapshotVerifyProof,
} from './commands/snapshot.js';
import {
  runQuarantineList,
  runQuarantinePurge,
  runQuarantineReplay,
  runQueueHealth,
  runQueuePrune,
  type QuarantineSelectionOptions,
} from './commands/queue.js';
import { runPlan } from './commands/plan.js';
import { runRecordsTask } from './commands/records.js';
import { runRecordsDead } from './commands/records-dead.js';
import { runDemo } from './commands/demo.js';
import { ALL_ROLES, runServe } from './commands/serve.js';
import { intFlag } from './flags.js';
import { runSim, type SimCliOptions } from './commands/sim.js';

const collectList = (v: string, prev: string[] = []) => [...prev, v];

export function buildProgram(ctx: CliContext, setExit: (code: number) => void): Command {
  const program = new Command('rty')
    .description('Backbone of the inference network: stores, ledger, routing, archive')
    .exitOverride();
  program
    .command('doctor')
    .description('check every store: reachable, version, round trip, capabilities')
    .action(async () => setExit(await runDoctor(ctx)));
  program
    .command('serve')
    .description('run a backbone process: HTTP APIs, node gateway and dispatch, background workers')
    .option('--roles <list>', `comma-separated roles (${ALL_ROLES})`, ALL_ROLES)
    .option('--port <n>', 'HTTP port (default HTTP_PORT; 0 = any free port)')
    .action(async (o: { roles: string; port?: string }) => setExit(await runServe(ctx, o)));
  program
    .command('migrate')
    .description("apply PostgreSQL migrations (advisory-locked) and the other stores' setup; idempotent")
    .option('--dry-run', 'print what would be applied, apply nothing', false)
    .action(async (o: { dryRun: boolean }) => setExit(await runMigrate(ctx, { dryRun: o.dryRun })));
  const ledger = program.command('ledger').description('credit ledger tools');
  ledger
    .command('verify')
    .description('recompute all balances from entries and report mismatches')
    .option('--against <cid>', 'also reconcile with this snapshot under its signed checkpoint')
    .option('--key <hex>', 'the network public key checkpoints must be signed by (default: this network)')
    .action(async (o: { against?: string; key?: string }) => setExit(await runLedgerVerify(ctx, o)));

  const audit = program.command('audit').description('the hash-chained admin and config history');
  audit
    .command('verify')
    .description('check the chain; names each removed, altered or reordered entry')
    .option('--against <cid>', 'compare every entry with this snapshot under its signed checkpoint')
    .option('--key <hex>', 'the network public key checkpoints must be signed by (default: this network)')
    .action(async (o: { against?: string; key?: string }) => setExit(await runAuditVerify(ctx, o)));

  const rollup = program.command('rollup').description('hashed daily aggregates of jobs and ledger activity');
  rollup
    .command('run')
    .description('roll up every finished day older than the detail window (idempotent)')
    .option('--through <day>', 'roll up through this UTC day (YYYY-MM-DD) instead of the detail window')
    .action(async (o: { through?: string }) => setExit(await runRollup(ctx, o)));
  rollup
    .command('verify')
    .description('recompute each period hash from its stored rows')
    .action(async () => setExit(await runRollupVerify(ctx)));
  rollup
    .command('prune')
    .description('drop job partitions that are rolled up and inside an archived, verified snapshot')
    .action(async () => setExit(await runRollupPrune(ctx)));

  const snapshot = program.command('snapshot').description('verifiable, content-addressed snapshots (CAR)');
  snapshot
    .command('create')
    .description('snapshot the authoritative state, archive it, verify the archived copy, record it')
    .action(async () => setExit(await runSnapshotCreate(ctx)));
  snapshot
    .command('list')
    .description('recorded snapshots, newest first')
    .action(async () => setExit(await runSnapshotList(ctx)));
  snapshot
    .command('verify <fileOrCid>')
    .description(
      'offline: every block hash, Merkle root, period hash, the audit chain, and the link to the predecessor',
    )
    .option('--previous <file>', "the predecessor's CAR (default: looked up in the archive)")
    .option('--cid <cid>', 'the CID the file must have (default: its <cid>.car name)')
    .action(async (ref: string, o: { previous?: string; cid?: string }) =>
      setExit(await runSnapshotVerify(ctx, ref, o)),
    );
  snapshot
    .command('verify-chain')
    .description(
      'every signed checkpoint from the first (or --trusted) and its snapshot; witnesses; consistency',
    )
    .option('--key <hex>', 'the network public key checkpoints must be signed by (default: this network)')
    .option('--trusted <hash>', 'start at this checkpoint (its hash), trusted as given')
    .option(
      '--witness <dir>',
      'a witness directory whose log must be a prefix of the archive log (repeatable)',
      collectList,
    )
    .option('--consistency <hashes...>', 'check that checkpoint <newer> contains <older> (two hashes)')
    .action(async (o: { key?: string; trusted?: string; witness?: string[]; consistency?: string[] }) =>
      setExit(await runSnapshotVerifyChain(ctx, o)),
    );
  snapshot
    .command('roots <fileOrCid>')
    .description('verify a snapshot pinned by CID and print each section: rows and Merkle root')
    .option('--cid <cid>', 'the CID the file must have (default: its <cid>.car name)')
    .action(async (ref: string, o: { cid?: string }) => setExit(await runSnapshotRoots(ctx, ref, o)));
  snapshot
    .command('prove <fileOrCid>')
    .description(
      'inclusion proof of one balance (--namespace), one rollup row (--rollup) or one record export (--record-export)',
    )
    .option('--namespace <id>', 'namespace id')
    .option('--rollup <key>', 'day,namespace,model,node,status (a prefix matches the first such row)')
    .option('--record-export <cid>', 'the CID of a record export file (listed in the record_exports section)')
    .option('--cid <cid>', 'the CID the file must have (default: its <cid>.car name)')
    .action(
      async (ref: string, o: { namespace?: string; rollup?: string; recordExport?: string; cid?: string }) =>
        setExit(await runSnapshotProve(ctx, ref, o)),
    );
  snapshot
    .command('verify-proof <proofFile>')
    .description('check an inclusion proof against a pinned snapshot (--cid) or a trusted root (--root)')
    .option('--cid <cid>', 'the snapshot whose section root is trusted (verified from the archive or --car)')
    .option('--car <file>', 'the CAR of --cid (default: the archive)')
    .option('--root <hex>', 'a trusted Merkle root (hex)')
    .action(async (file: string, o: { root?: string; cid?: string; car?: string }) =>
      setExit(await runSnapshotVerifyProof(ctx, file, o)),
    );
  snapshot
    .command('restore <file>')
    .description('launch a network database from a snapshot: verify, migrate, load (target must be empty)')
    .requiredOption('--database <url>', 'PostgreSQL URL of the new database')
    .option('--schema <name>', 'schema to restore into', 'public')
    .option('--cid <cid>', 'the CID the file must have (default: its <cid>.car name)')
    .action(async (file: string, o: { database: string; schema: string; cid?: string }) =>
      setExit(await runSnapshotRestore(ctx, file, o)),
    );
  snapshot
    .command('freeze')
    .description('export a consistent view of the live network (active jobs, balances, online nodes)')
    .option(
      '--online-key <key>',
      'read online nodes from this one sorted set (under REDIS_KEY_PREFIX) instead of the live cells',
    )
    .action(async (o: { onlineKey?: string }) => setExit(await runSnapshotFreeze(ctx, o)));
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
  const records = program.command('records').description('job records in MongoDB: retention and Space plan');
  records
    .command('sweep')
    .description('export → verify → delete records past each namespace retention, once, under the task lock')
    .action(async () => setExit(await runRecordsTask(ctx, 'sweep')));
  records
    .command('charge')
    .description("charge today's Space-plan storage of every namespace on a paid plan (idempotent per day)")
    .action(async () => setExit(await runRecordsTask(ctx, 'charge')));
  const plan = program
    .command('plan')
    .description('Space plans of a namespace: paid extended retention, charged daily through the ledger');
  plan
    .command('list')
    .description('the plans on offer (RECORDS_SPACE_PLANS): retention and price')
    .action(async () => setExit(await runPlan(ctx, { kind: 'list' })));
  plan
    .command('show <namespace>')
    .description("a namespace's plan, paid-through day, grace deadline and last changes")
    .action(async (namespace: string) => setExit(await runPlan(ctx, { kind: 'show', namespace })));
  plan
    .command('set <namespace> <plan>')
    .description('choose or change the plan; pays the first day now (audited, idempotent by key)')
    .option('--idempotency-key <key>', 'repeat a request safely (default: a new key, printed)')
    .action(async (namespace: string, p: string, o: { idempotencyKey?: string }) =>
      setExit(
        await runPlan(ctx, {
          kind: 'set',
          namespace,
          plan: p,
          ...(o.idempotencyKey !== undefined ? { idempotencyKey: o.idempotencyKey } : {}),
        }),
      ),
    );
  plan
    .command('cancel <namespace>')
    .description('back to the default retention (no refund of the day paid; the sweep exports the rest)')
    .option('--idempotency-key <key>', 'repeat a request safely (default: a new key, printed)')
    .action(async (namespace: string, o: { idempotencyKey?: string }) =>
      setExit(
        await runPlan(ctx, {
          kind: 'cancel',
          namespace,
          ...(o.idempotencyKey !== undefined ? { idempotencyKey: o.idempotencyKey } : {}),
        }),
      ),
    );
  plan
    .command('receipts <namespace>')
    .description('retention runs of a namespace: cut-off, counts, export files with SHA-256')
    .action(async (namespace: string) => setExit(await runPlan(ctx, { kind: 'receipts', namespace })));
  const dead = records
    .command('dead')
    .description('the records dead-letter queue: events the recorder refused, each with its reason');
  for (const [name, description] of [
    ['list', 'show dead-lettered messages (reason, source queue, jobs) without removing them'],
    ['replay', 'publish dead-lettered messages back to the records stream (removed once confirmed)'],
    ['purge', 'delete dead-lettered messages'],
  ] as const) {
    dead
      .command(name)
      .description(description)
      .option('--limit <n>', 'examine at most this many messages', limit, 10_000)
      .action(async (o: { limit: number }) => setExit(await runRecordsDead(ctx, name, o)));
  }
  program
    .command('demo')
    .description(
      'run the network end to end (backbone + simulated nodes + openai-client traffic) in a schema of its own, check the invariants, clean up',
    )
    .option('--keep', 'keep the demo schema, Redis keys, Mongo database and lanes', false)
    .option('--nodes <n>', 'simulated nodes', '6')
    .option('--requests <n>', 'consumer requests', '150')
    .option('--concurrency <n>', 'requests in flight', '12')
    .action(async (o: { keep: boolean; nodes: string; requests: string; concurrency: string }) =>
      setExit(
        await runDemo(ctx, {
          keep: o.keep,
          nodes: intFlag('nodes', o.nodes, 1),
          requests: intFlag('requests', o.requests, 1),
          concurrency: intFlag('concurrency', o.concurrency, 1),
        }),
      ),
    );
  program
    .command('sim')
    .description(
      'simulated nodes: bind, register, heartbeat and serve jobs over the gateway until SIGINT/SIGTERM',
    )
    .option('--url <url>', 'backbone base URL', 'http://127.0.0.1:8080')
    .option('--gate-url <url>', 'Gate/Admin API base URL (default --url)')
    .option('--keys-file <path>', 'node keys, one a line: reused, and new ones appended (0600)')
    .option('--nodes <n>', 'number of nodes', '4')
    .option('--models <list>', 'comma-separated models every node serves', 'llama3-8b')
    .option('--environment <env>', ENVIRONMENTS.join(' or '), 'testnet')
    .option('--capacity <n>', 'concurrent jobs per node', '4')
    .option('--region <name>', 'region of the nodes')
    .option('--latency-ms <ms>', 'time a job takes', '20')
    .option('--jitter-ms <ms>', 'random extra time per job (0..ms)', '0')
    .option('--failure-rate <p>', 'share of jobs answered with job.error', '0')
    .option('--disconnect-rate <p>', 'share of jobs during which the node drops its socket', '0')
    .option('--slow-rate <p>', 'share of jobs answered after their deadline', '0')
    .option('--token-delay-ms <ms>', 'built-in runtime: time to produce each output token (streamed)', '0')
    .option(
      '--upstream <url>',
      'forward jobs to this OpenAI-compatible server instead of the built-in runtime',
    )
    .option('--admin-token <token>', 'admin token to create the operator account (default ADMIN_TOKEN)')
    .option('--account-token <token>', 'bind to this existing operator account instead')
    .option('--skip-bind', 'the nodes are bound already (with --keys-file)', false)
    .option('--report-ms <ms>', 'interval of the counter lines', '10000')
    .action(async (o: SimCliOptions) => setExit(await runSim(ctx, o)));
  return program;
}
