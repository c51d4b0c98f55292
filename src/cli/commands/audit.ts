// `rty audit verify`: walks the hash-chained audit log and names every removed, altered or reordered entry; the head
// recorded by the newest snapshot anchors the tail.
import type { CliContext } from '../context.js';
import { withArchive } from './archive-wiring.js';

export async function runAuditVerify(ctx: CliContext): Promise<number> {
  return withArchive(ctx, async ({ audit, snapshots }) => {
    const anchor = await snapshots.latestAuditAnchor();
    const r = await audit.verify(anchor ? { anchor } : {});
    for (const p of r.problems) ctx.out(`PROBLEM entry ${p.seq} ${p.kind}: ${p.message}`);
    const head = r.head ? `head ${r.head.seq} ${r.head.hash.toString('hex')}` : 'empty';
    ctx.out(
      r.problems.length === 0
        ? `audit: ${r.entries} entries, chain intact (${head}${anchor ? `; snapshot anchor ${anchor.seq} present` : ''})`
        : `audit: ${r.problems.length} problem(s) in ${r.entries} entries`,
    );
    return r.problems.length === 0 ? 0 : 1;
  });
}
