// Verifies the checkpoint chain: every checkpoint signed by the pinned network key, dense sequence, each linked to the
// one before, each snapshot fetched by its CID, verified pinned, and equal to what its checkpoint commits to; witness
// logs must be prefixes of it (consistency), and any two checkpoints can be checked for containment.
import { AppError } from '../../platform/errors.js';
import { checkSignature, checkpointHash, type SignedCheckpoint } from './checkpoint.js';
import { SnapshotReader } from './snapshot-reader.js';
import { verifyOpened, type VerifyProgress, type VerifyReport } from './snapshot-verify.js';

export interface ChainReport {
  checkpoints: number;
  /** 1-based sequence of the first checkpoint checked (1, or the trusted one). */
  from: number;
  head: { seq: number; cid: string; hash: string } | null;
  witnesses: Array<{ dir: string; checkpoints: number }>;
}

export interface ChainOptions {
  log: SignedCheckpoint[];
  trustedKey: string;
  /** The snapshot by CID: its bytes, or a reader over its file (bounded memory); undefined when missing. */
  fetch: (cid: string) => Promise<Uint8Array | SnapshotReader | undefined>;
  /** Start at this checkpoint (its hash), trusted as given: what came before it is not re-checked. */
  trusted?: string;
  witnesses?: Array<{ dir: string; log: SignedCheckpoint[] }>;
  onProgress?: (p: VerifyProgress) => void | Promise<void>;
}

const broken = (m: string) => new AppError('chain_broken', m);

/** Checks one checkpoint's commitments against the verified snapshot it names. */
export function checkAgainstReport(s: SignedCheckpoint, r: VerifyReport): string | undefined {
  const c = s.checkpoint;
  if (r.seq !== c.seq || (r.prev ?? null) !== c.prev)
    return `seq/prev ${r.seq}/${r.prev} ≠ checkpoint ${c.seq}/${c.prev}`;
  if (r.createdAt !== c.createdAt) return `created ${r.createdAt} ≠ checkpoint ${c.createdAt}`;
  const roots = (x: Record<string, string>) => JSON.stringify(Object.entries(x).sort());
  if (roots(r.roots) !== roots(c.roots)) return 'section roots differ from the checkpoint';
  if (JSON.stringify(r.auditHead) !== JSON.stringify(c.auditHead))
    return 'audit head differs from the checkpoint';
  for (const [k, v] of Object.entries(c.ledger))
    if (r.ledger[k as keyof typeof r.ledger] !== v)
      return `ledger total ${k} ${r.ledger[k as keyof typeof r.ledger]} ≠ checkpoint ${v}`;
  return undefined;
}

export async function verifyChain(o: ChainOptions): Promise<ChainReport> {
  const { log } = o;
  let start = 0;
  if (o.trusted) {
    start = log.findIndex((s) => checkpointHash(s.checkpoint) === o.trusted);
    if (start < 0) throw new AppError('not_found', `the trusted checkpoint ${o.trusted} is not in the log`);
  }
  let prev: { s: SignedCheckpoint; hash: string } | undefined =
    start > 0 ? { s: log[start - 1]!, hash: checkpointHash(log[start - 1]!.checkpoint) } : undefined;
  for (let i = start; i < log.length; i += 1) {
    const s = log[i]!;
    const c = s.checkpoint;
    const where = `checkpoint ${i + 1} (snapshot ${c.cid})`;
    if (!checkSignature(s, o.trustedKey))
      throw new AppError(
        'integrity_failed',
        `${where} is not signed by the network key ${o.trustedKey.slice(0, 18)}…`,
      );
    if (c.seq !== i + 1)
      throw broken(`${where} has seq ${c.seq}; the log's ${i + 1}th checkpoint must have seq ${i + 1}`);
    if (i > start || start === 0) {
      const expected = prev?.hash ?? null;
      if (c.prevCheckpoint !== expected) throw broken(`${where} does not link to the checkpoint before it`);
      if (c.prev !== (prev?.s.checkpoint.cid ?? null))
        throw broken(
          `${where} names predecessor ${c.prev}, the checkpoint before names ${prev?.s.checkpoint.cid ?? 'none'}`,
        );
    }
    const source = await o.fetch(c.cid);
    if (!source)
      throw new AppError('not_found', `${where}: the snapshot is missing from the archive`, {
        missing: c.cid,
      });
    const snap =
      source instanceof SnapshotReader
        ? await SnapshotReader.fromSource(source.car, c.cid)
        : await SnapshotReader.open(source, c.cid);
    // The link to the predecessor was checked above through the checkpoints (both signed); the predecessor's own
    // file was verified in the previous step.
    const report = await verifyOpened(snap, {
      expectedCid: c.cid,
      linkChecked: true,
      onProgress: o.onProgress,
    }).finally(() => snap.close());
    const diff = checkAgainstReport(s, report);
    if (diff) throw new AppError('integrity_failed', `${where}: ${diff}`);
    prev = { s, hash: checkpointHash(c) };
  }
  const witnesses: ChainReport['witnesses'] = [];
  for (const w of o.witnesses ?? []) {
    if (w.log.length > log.length)
      throw broken(
        `witness ${w.dir} holds ${w.log.length} checkpoints, the archive only ${log.length}: the log was cut`,
      );
    for (const [i, s] of w.log.entries()) {
      if (checkpointHash(s.checkpoint) !== checkpointHash(log[i]!.checkpoint))
        throw broken(
          `witness ${w.dir} saw a different checkpoint ${i + 1}: the archive's history was rewritten`,
        );
    }
    witnesses.push({ dir: w.dir, checkpoints: w.log.length });
  }
  const last = log.at(-1);
  return {
    checkpoints: log.length - start,
    from: start + 1,
    head: last
      ? { seq: last.checkpoint.seq, cid: last.checkpoint.cid, hash: checkpointHash(last.checkpoint) }
      : null,
    witnesses,
  };
}

/** Consistency of two checkpoints: the newer one's chain, link by signed link, contains the older one. */
export function checkConsistency(
  log: SignedCheckpoint[],
  trustedKey: string,
  older: string,
  newer: string,
): number {
  const byHash = new Map(log.map((s) => [checkpointHash(s.checkpoint), s]));
  let at = byHash.get(newer);
  if (!at) throw new AppError('not_found', `checkpoint ${newer} is not in the log`);
  let steps = 0;
  for (;;) {
    if (!checkSignature(at, trustedKey))
      throw new AppError(
        'integrity_failed',
        `checkpoint ${checkpointHash(at.checkpoint)} is not signed by the network key`,
      );
    if (checkpointHash(at.checkpoint) === older) return steps;
    const p = at.checkpoint.prevCheckpoint;
    if (!p) throw broken(`checkpoint ${newer}'s chain does not contain ${older}`);
    const next = byHash.get(p);
    if (!next)
      throw new AppError(
        'not_found',
        `checkpoint ${p} (linked from the chain of ${newer}) is not in the log`,
      );
    at = next;
    steps += 1;
  }
}
