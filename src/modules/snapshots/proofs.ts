// Inclusion proofs for one snapshot record (its chunk plus the audit path over the section's chunk hashes): built
// from a snapshot, checked against a trusted Merkle root alone.
import * as dagCbor from '@ipld/dag-cbor';
import { z } from 'zod';
import { AppError } from '../../platform/errors.js';
import {
  LeafHashes,
  auditPath,
  chunkLeafHash,
  isArrayHead,
  merkleRoot,
  rootFromPath,
} from '../canonical/index.js';
import type { SnapshotReader } from './snapshot-reader.js';

export const PROOF_VERSION = 2;

/**
 * Format version 2: the Merkle leaf is the chunk holding the record, so a proof carries the whole chunk block and the
 * audit path over the section's chunk hashes (docs/snapshot-format.md §8).
 */
export interface InclusionProof {
  version: typeof PROOF_VERSION;
  snapshot: string;
  section: string;
  /** The chunk's position among the section's chunks (the leaf index) and their number (the tree size). */
  chunk: number;
  chunks: number;
  /** The chunk block's bytes, base64: SHA-256 of them is the leaf hash (and the chunk's CID digest). */
  block: string;
  /** The record's position in the chunk's array of rows. */
  row: number;
  /** The decoded record, for people; bigints as decimal strings, bytes as hex. */
  record: unknown[];
  path: string[];
  root: string;
}

export const inclusionProofSchema = z.object({
  version: z.literal(PROOF_VERSION),
  snapshot: z.string(),
  section: z.string(),
  chunk: z.number().int().min(0),
  chunks: z.number().int().min(1),
  block: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/),
  row: z.number().int().min(0),
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

const asU8 = (b: Uint8Array) => new Uint8Array(b.buffer, b.byteOffset, b.length);

/** Proof for the first row of `section` whose decoded values satisfy `match`. */
export async function buildProof(
  snap: SnapshotReader,
  section: string,
  match: (row: unknown[]) => boolean,
): Promise<InclusionProof> {
  const s = await snap.section(section);
  const leaves = new LeafHashes();
  for (const c of s.chunks) leaves.addHash(c.multihash.digest);
  const root = merkleRoot(leaves);
  if (!root.equals(Buffer.from(snap.manifest.roots[section]!)))
    throw new AppError('integrity_failed', `section ${section} does not hash to its manifest root`);
  for (let i = 0; i < s.chunks.length; i += 1) {
    const block = await snap.chunkBytes(s, i);
    const rows = dagCbor.decode(asU8(block)) as unknown[][];
    const row = rows.findIndex((r) => match(r));
    if (row < 0) continue;
    return {
      version: PROOF_VERSION,
      snapshot: snap.cid,
      section,
      chunk: i,
      chunks: s.chunks.length,
      block: Buffer.from(block).toString('base64'),
      row,
      record: readable(rows[row]) as unknown[],
      path: auditPath(leaves, i).map((h) => h.toString('hex')),
      root: root.toString('hex'),
    };
  }
  throw new AppError('not_found', `no matching record in section ${section} of ${snap.cid}`);
}

/**
 * Checks a proof against a trusted `root` (hex, e.g. a pinned snapshot's section root): the chunk must hash up to it
 * along the path and hold the shown record at `row`. The proof's own `root` field is never trusted.
 */
export function checkProof(input: unknown, root: string): { ok: boolean; reason?: string } {
  if (!/^[0-9a-f]{64}$/.test(root)) return { ok: false, reason: 'the trusted root is not 64 hex digits' };
  const version = (input as { version?: unknown } | null)?.version;
  if (version !== undefined && version !== PROOF_VERSION)
    return {
      ok: false,
      reason: `proof format version ${String(version)} is not supported: this build checks version ${PROOF_VERSION} (chunk leaves); prove again against the snapshot`,
    };
  const parsed = inclusionProofSchema.safeParse(input);
  if (!parsed.success)
    return { ok: false, reason: `not an inclusion proof: ${parsed.error.issues[0]?.message}` };
  const p = parsed.data;
  const block = asU8(Buffer.from(p.block, 'base64'));
  if (!isArrayHead(block[0])) return { ok: false, reason: 'the chunk is not a DAG-CBOR array' };
  let reached: Buffer;
  try {
    reached = rootFromPath(
      chunkLeafHash(block),
      p.chunk,
      p.chunks,
      p.path.map((h) => Buffer.from(h, 'hex')),
    );
  } catch {
    return { ok: false, reason: 'the chunk and path do not lead to the root' };
  }
  if (!reached.equals(Buffer.from(root, 'hex')))
    return { ok: false, reason: 'the chunk and path do not lead to the root' };
  let rows: unknown;
  try {
    rows = dagCbor.decode(block);
  } catch {
    return { ok: false, reason: 'the chunk is not DAG-CBOR' };
  }
  if (!Array.isArray(rows) || p.row >= rows.length || !Array.isArray(rows[p.row]))
    return { ok: false, reason: `the chunk has no row ${p.row}` };
  if (JSON.stringify(readable(rows[p.row])) !== JSON.stringify(p.record))
    return { ok: false, reason: 'the record shown differs from the record in the chunk' };
  return { ok: true };
}
