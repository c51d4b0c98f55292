// Snapshot blocks (pure): the manifest (root), one block per section (Merkle root, count, chunk links) and parsing
// that refuses anything of the wrong shape.
import * as dagCbor from '@ipld/dag-cbor';
import { CID } from 'multiformats/cid';
import { AppError } from '../../platform/errors.js';
import type { Column, ColumnType } from '../canonical/index.js';

/**
 * Version 2: a section's Merkle leaves are its chunk blocks (leaf hash = the chunk's CID digest); version 1 hashed
 * every row as a leaf. Version 1 files are refused by name, not read under the wrong tree.
 */
export const SNAPSHOT_FORMAT_VERSION = 2;

export type SnapshotKind = 'snapshot' | 'freeze';

/** Ledger totals of one snapshot (decimal strings: DAG-CBOR and JSON carry them without a 64-bit concern). */
export interface LedgerTotals {
  entries: string;
  lastEntryId: string;
  available: string;
  reserved: string;
  bonusAvailable: string;
  earned: string;
  paidOut: string;
  pendingHolds: string;
  pendingHeld: string;
}

export interface Manifest {
  version: typeof SNAPSHOT_FORMAT_VERSION;
  kind: SnapshotKind;
  /** Position in the chain (null for a freeze, which is not chained). */
  seq: number | null;
  prev: CID | null;
  createdAt: string;
  network: { configVersion: number | null; configDigest: string | null };
  /** First and last rolled-up day the snapshot carries (inclusive). */
  rollupRange: { from: string; to: string } | null;
  auditHead: { seq: number; hash: Uint8Array } | null;
  /** Totals of the ledger tables in this snapshot (null for a freeze); a checkpoint anchors them. */
  ledger: LedgerTotals | null;
  /** The snapshot this network was launched from (first snapshot after a restore), else null. */
  origin: CID | null;
  roots: Record<string, Uint8Array>;
  sections: Record<string, CID>;
}

export interface SectionBlock {
  name: string;
  columns: Array<[string, ColumnType]>;
  count: number;
  root: Uint8Array;
  chunks: CID[];
}

const bad = (what: string) => new AppError('integrity_failed', `malformed snapshot: ${what}`);
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | null =>
  typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : null;

export function encodeManifest(m: Manifest): Uint8Array {
  return dagCbor.encode(m);
}

export function parseManifest(bytes: Uint8Array): Manifest {
  let v: unknown;
  try {
    v = dagCbor.decode(bytes);
  } catch (err) {
    throw bad(`root block does not decode (${(err as Error).message})`);
  }
  if (!isObj(v) || !('version' in v)) throw bad('the root block is not a snapshot manifest');
  if (v.version !== SNAPSHOT_FORMAT_VERSION)
    throw new AppError(
      'integrity_failed',
      `snapshot format version ${String(v.version)} is not supported: this build reads version ${SNAPSHOT_FORMAT_VERSION} only ` +
        '(version 1 hashed single rows as Merkle leaves; version 2 hashes chunks, see docs/snapshot-format.md)',
      { version: typeof v.version === 'number' ? v.version : String(v.version) },
    );
  if (v.kind !== 'snapshot' && v.kind !== 'freeze') throw bad('unknown kind');
  if (!isObj(v.roots) || !isObj(v.sections)) throw bad('manifest lacks roots or sections');
  for (const [k, c] of Object.entries(v.sections)) {
    if (!(CID.asCID(c) && v.roots[k] instanceof Uint8Array)) throw bad(`section ${k} lacks a link or a root`);
  }
  const prev = v.prev === null ? null : CID.asCID(v.prev);
  if (v.prev !== null && !prev) throw bad('prev is not a CID');
  const head = v.auditHead;
  const origin = v.origin === undefined || v.origin === null ? null : CID.asCID(v.origin);
  if (v.origin !== undefined && v.origin !== null && !origin) throw bad('origin is not a CID');
  const ledger =
    isObj(v.ledger) && Object.values(v.ledger).every((x) => typeof x === 'string') ? v.ledger : null;
  return {
    version: SNAPSHOT_FORMAT_VERSION,
    kind: v.kind,
    seq: num(v.seq),
    prev,
    createdAt: String(v.createdAt),
    network: isObj(v.network)
      ? {
          configVersion: num(v.network.configVersion),
          configDigest: (v.network.configDigest as string | null) ?? null,
        }
      : { configVersion: null, configDigest: null },
    rollupRange: isObj(v.rollupRange)
      ? { from: String(v.rollupRange.from), to: String(v.rollupRange.to) }
      : null,
    auditHead:
      isObj(head) && head.hash instanceof Uint8Array ? { seq: num(head.seq) ?? 0, hash: head.hash } : null,
    ledger: ledger as LedgerTotals | null,
    origin,
    roots: v.roots as Record<string, Uint8Array>,
    sections: v.sections as Record<string, CID>,
  };
}

export function encodeSectionBlock(s: SectionBlock): Uint8Array {
  return dagCbor.encode(s);
}

export function parseSectionBlock(bytes: Uint8Array, name: string): SectionBlock {
  let v: unknown;
  try {
    v = dagCbor.decode(bytes);
  } catch (err) {
    throw bad(`section ${name} does not decode (${(err as Error).message})`);
  }
  if (
    !isObj(v) ||
    v.name !== name ||
    !Array.isArray(v.chunks) ||
    !Array.isArray(v.columns) ||
    !(v.root instanceof Uint8Array)
  )
    throw bad(`section block of ${name} has the wrong shape`);
  const chunks = v.chunks.map((c) => CID.asCID(c));
  if (chunks.some((c) => !c)) throw bad(`section ${name} has a chunk link that is not a CID`);
  return {
    name,
    columns: v.columns as Array<[string, ColumnType]>,
    count: num(v.count) ?? -1,
    root: v.root,
    chunks: chunks as CID[],
  };
}

export function columnsOf(cols: Column[]): Array<[string, ColumnType]> {
  return cols.map((c) => [c.name, c.type]);
}
