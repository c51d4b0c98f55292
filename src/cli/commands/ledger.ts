// `rty ledger verify [--against <cid>]`: recomputes every balance and hold from the entries and prints each mismatch;
// `--against` also reconciles the live ledger with a snapshot under a signed checkpoint.
import { createLogger } from '../../platform/logger.js';
import { createCreditsModule } from '../../modules/credits/index.js';
import { openCliPool, type CliContext } from '../context.js';
import { withArchive } from './archive-wiring.js';
import { archiveExit, EXIT } from './archive-exit.js';

export async function runLedgerVerify(
  ctx: CliContext,
  opts: { against?: string; key?: string } = {},
): Promise<number> {
  if (opts.against) {
    const against = opts.against;
    return withArchive(ctx, ({ snapshots }) =>
      archiveExit(ctx, async () => {
        const r = await snapshots.ledgerAgainst(against, opts.key ?? snapshots.networkKey!);
        for (const p of r.problems) ctx.out(`MISMATCH ${p}`);
        ctx.out(
          r.problems.length === 0
            ? `ledger: consistent with checkpoint ${r.seq} (${against}): ${r.checkpointed} checkpointed entries unchanged, ${r.since} since; every live balance and hold equals its entries`
            : `ledger: ${r.problems.length} mismatch(es) against checkpoint ${r.seq} (${against})`,
        );
        return r.problems.length === 0 ? EXIT.ok : EXIT.tampered;
      }),
    );
  }
  const { config } = ctx;
  const pool = openCliPool(config, 'ledger-verify');
  const { ledger } = createCreditsModule({
    config,
    stores: { pool },
    log: createLogger('silent'),
    unbatched: true,
  });
  try {
    const mismatches = await ledger.verifyLedger();
    for (const m of mismatches)
      ctx.out(`MISMATCH ${m.scope} ${m.id} ${m.field}: stored=${m.stored} derived=${m.derived}`);
    ctx.out(
      mismatches.length === 0
        ? 'ledger: consistent (every balance and hold equals its entries)'
        : `ledger: ${mismatches.length} mismatch(es)`,
    );
    return mismatches.length === 0 ? 0 : 1;
  } finally {
    await ledger.stop();
    await pool.end();
  }
}
