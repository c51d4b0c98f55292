// Inclusion proofs for one snapshot record: built from a snapshot, checked against a Merkle root alone.
import * as dagCbor from '@ipld/dag-cbor';
import { z } from 'zod';
import { AppError } from '../../platform/errors.js';
import { LeafHashes, auditPath, merkleRoot, verifyInclusion } from '../canonical/index.js';
import type { SnapshotReader } from './snapshot-reader.js';

export interface InclusionProof {
  version: 1;
  snapshot: string;
  section: string;
  index: number;
  size: number;
  /** The record as the snapshot encodes it (DAG-CBOR, hex); the leaf hash is H(0x00 || leaf). */
  leaf: string;
  /** The decoded record, for people; bigints as decimal strings, bytes as hex. */
  record: unknown[];
  path: string[];
  root: string;
}

export const inclusionProofSchema = z.object({
  version: z.literal(1),
  snapshot: z.string(),
  section: z.string(),
  index: z.number().int().min(0),
  size: z.number().int().min(1),
  leaf: z.string().regex(/^[0-9a-f]*$/),
  record: z.array(z.unknown()),
  path: z.array(z.string().regex(/^[0-9a-f]{64}$/)),
  root: z.string().regex(/^[0-9a-f]{64}$/),
});

const readable = (v: unknown): unknown =>
  typeof v === 'bigint'
    ? v.toString()
    : v instanceof Uint8Array
      ? Buffer.from(v).toString('hex')
      : Array.isArray(v)
        ? v.map(readable)
        : v;

/** Proof for the first row of `section` whose decoded values satisfy `match`. */
export async function buildProof(
  snap: SnapshotReader,
  section: string,
  match: (row: unknown[]) => boolean,
): Promise<InclusionProof> {
  const s = await snap.section(section);
  const leaves = new LeafHashes();
  let found: { index: number; leaf: Uint8Array } | undefined;
  for (let i = 0; i < s.chunks.length; i += 1) {
    for (const item of await snap.chunkItems(s, i)) {
      if (!found && match(dagCbor.decode(item) as unknown[])) found = { index: leaves.size, leaf: item };
      leaves.addLeaf(item);
    }
  }
  if (!found) throw new AppError('not_found', `no matching record in section ${section} of ${snap.cid}`);
  const root = merkleRoot(leaves);
  if (!root.equals(Buffer.from(snap.manifest.roots[section]!)))
    throw new AppError('integrity_failed', `section ${section} does not hash to its manifest root`);
  return {
    version: 1,
    snapshot: snap.cid,
    section,
    index: found.index,
    size: leaves.size,
    leaf: Buffer.from(found.leaf).toString('hex'),
    record: readable(dagCbor.decode(found.leaf)) as unknown[],
    path: auditPath(leaves, found.index).map((h) => h.toString('hex')),
    root: root.toString('hex'),
  };
}

/**
 * Checks a proof against a trusted `root` (hex, e.g. a pinned snapshot's section root): the leaf must hash up to it and
 * the shown record must be what the leaf encodes. The proof's own `root` field is never trusted.
 */
export function checkProof(input: unknown, root: string): { ok: boolean; reason?: string } {
  if (!/^[0-9a-f]{64}$/.test(root)) return { ok: false, reason: 'the trusted root is not 64 hex digits' };
  const parsed = inclusionProofSchema.safeParse(input);
  if (!parsed.success)
    return { ok: false, reason: `not an inclusion proof: ${parsed.error.issues[0]?.message}` };
  const p = parsed.data;
  const leaf = Buffer.from(p.leaf, 'hex');
  const expectedRoot = Buffer.from(root, 'hex');
  if (
    !verifyInclusion(
      leaf,
      p.index,
      p.size,
      p.path.map((h) => Buffer.from(h, 'hex')),
      expectedRoot,
    )
  )
    return { ok: false, reason: 'the leaf and path do not lead to the root' };
  let decoded: unknown;
  try {
    decoded = readable(dagCbor.decode(leaf));
  } catch {
    return { ok: false, reason: 'the leaf is not DAG-CBOR' };
  }
  if (JSON.stringify(decoded) !== JSON.stringify(p.record))
    return { ok: false, reason: 'the record shown differs from the record the leaf encodes' };
  return { ok: true };
}
