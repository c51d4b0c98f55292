// `rty audit verify [--against <cid>]`: walks the hash-chained audit log and names every removed, altered or reordered
// entry; the head recorded by the newest snapshot anchors the tail, and `--against` compares every entry with the copy
// in a snapshot under a signed checkpoint (a rewrite with recomputed hashes inside PostgreSQL is caught there).
import type { CliContext } from '../context.js';
import { withArchive } from './archive-wiring.js';
import { archiveExit, EXIT } from './archive-exit.js';

export async function runAuditVerify(
  ctx: CliContext,
  opts: { against?: string; key?: string } = {},
): Promise<number> {
  return withArchive(ctx, ({ audit, snapshots }) =>
    archiveExit(ctx, async () => {
      const copy = opts.against
        ? await snapshots.auditCopy(opts.against, opts.key ?? snapshots.networkKey!)
        : undefined;
      const anchor = copy ? copy.head : await snapshots.latestAuditAnchor();
      const r = await audit.verify(anchor ? { anchor } : {});
      const problems = [...r.problems, ...(copy ? await audit.compareWith(copy.entries) : [])];
      for (const p of problems) ctx.out(`PROBLEM entry ${p.seq} ${p.kind}: ${p.message}`);
      const head = r.head ? `head ${r.head.seq} ${r.head.hash.toString('hex')}` : 'empty';
      const against = copy
        ? `; ${copy.entries.length} entries equal checkpoint ${copy.seq} (${opts.against})`
        : anchor
          ? `; snapshot anchor ${anchor.seq} present`
          : '';
      ctx.out(
        problems.length === 0
          ? `audit: ${r.entries} entries, chain intact (${head}${against})`
          : `audit: ${problems.length} problem(s) in ${r.entries} entries`,
      );
      if (problems.length === 0) return EXIT.ok;
      return copy ? EXIT.tampered : EXIT.failed;
    }),
  );
}
