// `rty queue ...`: queue health (depths from passive declares), idle-lane pruning, quarantine list / replay / purge.
import { createRoutingModule, type RoutingService } from '../../modules/routing/index.js';
import { openCliPool, type CliContext } from '../context.js';

async function withRouting<T>(ctx: CliContext, fn: (routing: RoutingService) => Promise<T>): Promise<T> {
  const { config } = ctx;
  const pool = openCliPool(config, 'queue');
  const { routing } = createRoutingModule({
    config,
    stores: { pool },
    log: ctx.log,
    connectionName: 'rty-cli',
  });
  try {
    await routing.start();
    return await fn(routing);
  } finally {
    await routing.stop();
    await pool.end();
  }
}

export async function runQueueHealth(ctx: CliContext): Promise<number> {
  return withRouting(ctx, async (routing) => {
    const h = await routing.health();
    ctx.out(`queue type: ${h.queueType}`);
    ctx.out(`${'queue'.padEnd(90)} ${'ready'.padStart(8)} ${'consumers'.padStart(9)}`);
    for (const q of h.queues)
      ctx.out(
        `${q.queue.padEnd(90)} ${String(q.messages ?? 'missing').padStart(8)} ${String(q.consumers ?? '-').padStart(9)}`,
      );
    ctx.out(`quarantine: ${h.quarantineSize ?? 'missing'}`);
    return h.quarantineSize === undefined ? 1 : 0;
  });
}

export async function runQuarantineList(ctx: CliContext, opts: { limit: number }): Promise<number> {
  return withRouting(ctx, async (routing) => {
    const items = await routing.listQuarantine(opts.limit);
    for (const q of items) {
      const j = q.job;
      ctx.out(
        j
          ? `${j.jobId} ns=${j.namespaceId} model=${j.model} env=${j.environment} priority=${j.priority} attempts=${j.attempt} reason=${JSON.stringify(q.reason)}`
          : `(invalid contract, ${q.bytes} bytes from ${q.from}) reason=${JSON.stringify(q.reason)}`,
      );
    }
    ctx.out(`${items.length} quarantined job(s) listed`);
    return 0;
  });
}

export interface QuarantineSelectionOptions {
  job?: string[];
  all: boolean;
  limit: number;
}

function selection(ctx: CliContext, o: QuarantineSelectionOptions) {
  if (!o.all && (!o.job || o.job.length === 0)) {
    ctx.out('select jobs with --job <id> (repeatable) or --all');
    return undefined;
  }
  return o.all ? { limit: o.limit } : { jobIds: o.job!, limit: o.limit };
}

export async function runQuarantineReplay(ctx: CliContext, o: QuarantineSelectionOptions): Promise<number> {
  const sel = selection(ctx, o);
  if (!sel) return 2;
  return withRouting(ctx, async (routing) => {
    const n = await routing.replayQuarantine(sel);
    ctx.out(`replayed ${n} job(s)`);
    return 0;
  });
}

export async function runQuarantinePurge(ctx: CliContext, o: QuarantineSelectionOptions): Promise<number> {
  const sel = selection(ctx, o);
  if (!sel) return 2;
  return withRouting(ctx, async (routing) => {
    const n = await routing.purgeQuarantine(sel);
    ctx.out(`purged ${n} job(s)`);
    return 0;
  });
}

/** Deletes idle, empty, unconsumed lanes and forgets them in the registry (also a task-runner job). */
export async function runQueuePrune(ctx: CliContext): Promise<number> {
  return withRouting(ctx, async (routing) => {
    const n = await routing.pruneIdleLanes();
    ctx.out(`pruned ${n} idle lane(s)`);
    return 0;
  });
}
