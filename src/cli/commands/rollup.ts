// `rty rollup run|verify|prune`: roll finished detail into hashed daily aggregates, re-check period hashes, and drop
// job partitions that are rolled up and inside an archived, verified snapshot.
import type { CliContext } from '../context.js';
import { createProgress } from '../progress.js';
import { withArchive } from './archive-wiring.js';
import { EXIT } from './archive-exit.js';

export async function runRollup(ctx: CliContext, opts: { through?: string }): Promise<number> {
  return withArchive(ctx, async ({ rollups }) => {
    const progress = createProgress('rollup');
    const t0 = performance.now();
    const r = await rollups.rollUp({ onProgress: (p) => progress.update(p), throughDay: opts.through });
    progress.finish();
    const secs = ((performance.now() - t0) / 1000).toFixed(2);
    ctx.out(
      r.days === 0
        ? `rollup: nothing to roll up (${secs}s)`
        : `rollup: ${r.days} days ${r.firstDay}..${r.lastDay}: ${r.jobs} jobs into ${r.jobGroups} groups, ${r.ledgerGroups} ledger groups (${secs}s)`,
    );
    return 0;
  });
}

export async function runRollupVerify(ctx: CliContext): Promise<number> {
  return withArchive(ctx, async ({ rollups }) => {
    const r = await rollups.verifyPeriods();
    for (const d of r.bad) ctx.out(`BAD period ${d}: its rows do not hash to the recorded hash`);
    ctx.out(
      r.bad.length === 0 ? `rollup: ${r.days} periods verified` : `rollup: ${r.bad.length} bad period(s)`,
    );
    return r.bad.length === 0 ? 0 : 1;
  });
}

export async function runRollupPrune(ctx: CliContext): Promise<number> {
  return withArchive(ctx, async ({ rollups, snapshots }) => {
    const progress = createProgress('prune');
    const r = await rollups.prunePartitions(
      (f, t) => snapshots.coverForPrune(f, t),
      (p) => progress.update(p),
    );
    progress.finish();
    for (const p of r.pruned)
      ctx.out(
        `pruned ${p.partition}: ${p.totals.jobs} jobs, ${p.totals.tokens} tokens, ${p.totals.credits} credits (snapshot ${p.snapshotCid})`,
      );
    for (const k of r.kept) ctx.out(`kept ${k.partition}: ${k.reason}`);
    ctx.out(`prune: ${r.pruned.length} partition(s) dropped, ${r.kept.length} kept`);
    // A partition kept because its archive copy failed verification is a tampered archive, not a routine keep.
    return r.kept.some((k) => /does not verify against its pinned CID|signed checkpoint/.test(k.reason))
      ? EXIT.tampered
      : 0;
  });
}
