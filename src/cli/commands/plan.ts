// `rty plan list|show|set|cancel|receipts`: the Space plan of a namespace from the command line, through the same
// service as the Gate and Admin APIs (charged through the ledger, audited as `cli`, idempotent by key).
// Exit codes as the archive commands: 0 ok, 1 refused (credits, a reused key), 2 usage, 4 no such namespace.
import { randomUUID } from 'node:crypto';
import { createAuditModule } from '../../modules/audit/index.js';
import { createCreditsModule } from '../../modules/credits/index.js';
import {
  createRecordsModule,
  renderSpacePlan,
  type PlanChange,
  type RecordsModule,
} from '../../modules/records/index.js';
import { isUuid } from '../../config/vocabulary.js';
import { AppError, isAppError } from '../../platform/errors.js';
import { connectMongo } from '../../stores/mongo/client.js';
import { openCliPool, type CliContext } from '../context.js';
import { EXIT } from './archive-exit.js';

export type PlanCommand =
  | { kind: 'list' }
  | { kind: 'show'; namespace: string }
  | { kind: 'receipts'; namespace: string }
  | { kind: 'set'; namespace: string; plan: string; idempotencyKey?: string }
  | { kind: 'cancel'; namespace: string; idempotencyKey?: string };

const micro = (m: bigint) => `${m} µ (${(Number(m) / 1e6).toFixed(6)} credits)`;

function printChange(ctx: CliContext, c: PlanChange, key: string): void {
  ctx.out(
    `plan ${c.action}${c.replayed ? ' (replayed: nothing changed)' : ''}: namespace ${c.namespaceId} ${c.fromPlan} → ${c.toPlan}, ` +
      `retention ${c.retentionDays} days, charged ${micro(c.chargedMicro)} for ${c.day}; idempotency key ${key}`,
  );
}

async function run(ctx: CliContext, cmd: PlanCommand, records: RecordsModule): Promise<number> {
  const { plans } = records;
  if (cmd.kind === 'list') {
    for (const p of plans.catalogue().map(renderSpacePlan))
      ctx.out(
        `${p.id}  retention ${p.retentionDays} days  ${p.priceMicroPerGbDay} µ per GB-day  at least ${p.minMicroPerDay} µ per day`,
      );
    return EXIT.ok;
  }
  if (!isUuid(cmd.namespace))
    throw new AppError(
      'invalid_request',
      `namespace must be a namespace id (a UUID), not "${cmd.namespace}"`,
    );
  if (cmd.kind === 'show') {
    const v = await plans.show(cmd.namespace);
    ctx.out(
      `namespace ${v.namespaceId}: plan ${v.plan}, retention ${v.retentionDays} days` +
        `${v.paidThrough ? `, paid through ${v.paidThrough.toISOString()}` : ''}` +
        `${v.graceUntil ? `, UNPAID: grace until ${v.graceUntil.toISOString()}` : ''}`,
    );
    for (const c of v.changes)
      ctx.out(
        `  ${c.createdAt.toISOString()} ${c.action} ${c.fromPlan} → ${c.toPlan} charged ${c.chargedMicro} µ by ${c.actor}`,
      );
    return EXIT.ok;
  }
  if (cmd.kind === 'receipts') {
    await plans.show(cmd.namespace); // an unknown namespace is "missing", not an empty list
    const runs = await plans.receipts(cmd.namespace);
    for (const r of runs)
      ctx.out(
        `${r.id} ${r.collection} ${r.status} cutoff ${r.cutoff.toISOString()} docs ${r.docCount ?? '-'} deleted ${r.deletedCount ?? '-'} ` +
          `files ${r.files.map((f) => `${f.name.slice(f.name.lastIndexOf('/') + 1)}:${f.sha256}`).join(',') || '-'}`,
      );
    ctx.out(`receipts: ${runs.length} retention run(s) of namespace ${cmd.namespace}`);
    return EXIT.ok;
  }
  // Without a key every call is a new request: the key is printed so that a retry can repeat it.
  const key = cmd.idempotencyKey ?? `cli-${randomUUID()}`;
  const c = await plans.change({
    namespaceId: cmd.namespace,
    plan: cmd.kind === 'set' ? cmd.plan : 'default',
    idempotencyKey: key,
    actor: 'cli',
  });
  printChange(ctx, c, key);
  return EXIT.ok;
}

export async function runPlan(ctx: CliContext, cmd: PlanCommand): Promise<number> {
  const { config } = ctx;
  const pool = openCliPool(config, `plan-${cmd.kind}`, 3);
  const mongo = await connectMongo(config.MONGO_URL, config.MONGO_DB);
  const { ledger } = createCreditsModule({ config, stores: { pool }, log: ctx.log, unbatched: true });
  const records = createRecordsModule({
    config,
    stores: { pool, mongo },
    log: ctx.log,
    ledger,
    audit: createAuditModule({ stores: { pool }, log: ctx.log }).audit,
  });
  try {
    return await run(ctx, cmd, records);
  } catch (err) {
    if (isAppError(err, 'invalid_request') || isAppError(err, 'invalid_amount')) {
      ctx.out(`usage: ${err.message}`);
      return EXIT.usage;
    }
    if (isAppError(err, 'namespace_not_found') || isAppError(err, 'not_found')) {
      ctx.out(`MISSING: ${err.message}`);
      return EXIT.missing;
    }
    if (isAppError(err, 'insufficient_credits') || isAppError(err, 'idempotency_conflict')) {
      ctx.out(`REFUSED: ${err.message} (nothing changed)`);
      return EXIT.failed;
    }
    throw err;
  } finally {
    await ledger.stop();
    await mongo.close();
    await pool.end();
  }
}
