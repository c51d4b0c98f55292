// Offline verification of a snapshot: block hashes (on open), section Merkle roots and counts, rollup period hashes,
// the audit chain inside it, and the link to its predecessor when that is at hand.
import * as dagCbor from '@ipld/dag-cbor';
import { AppError } from '../../platform/errors.js';
import { ChainVerifier, type AuditEntry, type JsonValue } from '../audit/index.js';
import { CborFormatError, countItems, firstText, scanRows, splitArray } from './cbor-items.js';
import { LeafHashes, isArrayHead, merkleRoot } from '../canonical/index.js';
import { SnapshotReader } from './snapshot-reader.js';
import { DeepChecker, deepSections, type LedgerTotals } from './snapshot-deep.js';
import { checkRecordExportRows, RECORD_EXPORTS } from './record-exports.js';

export interface VerifyProgress {
  stage: string;
  done: number;
  total: number;
  detail?: string;
}

export interface VerifyOptions {
  /** The CID the file must have (its root); a file with another root is refused. */
  expectedCid?: string;
  /** The predecessor's CAR by CID (e.g. from the archive); undefined (not at hand) fails the verify as missing. */
  loadPrevious?: (cid: string) => Promise<Uint8Array | SnapshotReader | undefined>;
  onProgress?: (p: VerifyProgress) => void | Promise<void>;
  /** The caller checked the link to the predecessor itself (e.g. through signed checkpoints): do not load it. */
  linkChecked?: boolean;
}

export interface VerifyReport {
  cid: string;
  kind: string;
  seq: number | null;
  prev: string | null;
  createdAt: string;
  blocks: number;
  bytes: number;
  sections: Array<{ name: string; count: number }>;
  periods: number;
  auditEntries: number;
  chain: 'first' | 'checked' | 'not-chained';
  /** Ledger totals recomputed from the snapshot's own tables. */
  ledger: LedgerTotals;
  roots: Record<string, string>;
  auditHead: { seq: number; hash: string } | null;
}

const SHA2_256 = 0x12;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** Sections whose rows are decoded during verification (small); rollup rows are kept as bytes, grouped by day. */
const decodedSections = new Set(['rollup_periods', 'audit_log', RECORD_EXPORTS]);
const rollupSections = new Set(['job_rollups', 'ledger_rollups']);

export async function verifySnapshot(bytes: Uint8Array, opts: VerifyOptions = {}): Promise<VerifyReport> {
  return verifyOpened(await SnapshotReader.open(bytes, opts.expectedCid), opts);
}

/**
 * Streams a CAR file: one pass over its framing indexes the blocks, then sections are walked block by block, each
 * block read once and checked against its CID. Memory is bounded by one chunk buffer, the block index, 32 bytes per
 * chunk of a section, per-namespace/node sums and the (small) rollup and audit sections, not by the file size.
 */
export async function verifySnapshotFile(path: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const snap = await SnapshotReader.openFile(path, opts.expectedCid);
  try {
    return await verifyOpened(snap, opts);
  } catch (err) {
    // Blocks are checked as they are read: a bad block earlier in the file is the failure to name.
    throw (await snap.car.firstBadBlock?.()) ?? err;
  } finally {
    await snap.close();
  }
}

const malformed = (fail: (m: string) => Error, name: string, i: number) => (err: unknown) => {
  if (err instanceof CborFormatError)
    return fail(`chunk ${i} of section ${name} is malformed (${err.message})`);
  return err;
};

export async function verifyOpened(snap: SnapshotReader, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const m = snap.manifest;
  if (opts.expectedCid !== undefined && snap.cid !== opts.expectedCid)
    throw new AppError(
      'integrity_failed',
      `the file's root is ${snap.cid}, not the pinned ${opts.expectedCid}`,
    );
  const fail = (msg: string) => new AppError('integrity_failed', `snapshot ${snap.cid}: ${msg}`);
  const decoded = new Map<string, unknown[][]>();
  // Leaf hashes of rollup rows by day for the period hashes (per row: rollups define them so; they are few rows).
  const rollupLeaves = new Map<string, Map<string, LeafHashes>>();
  const sections: VerifyReport['sections'] = [];
  const deep = new DeepChecker();
  const names = snap.sectionNames();
  for (const [si, name] of names.entries()) {
    const s = await snap.section(name);
    if (!Buffer.from(s.root).equals(Buffer.from(m.roots[name]!)))
      throw fail(`section ${name}: root in its block differs from the manifest`);
    // Format version 2: the leaves are the chunks' CID digests, so the tree needs no chunk read; reading each chunk
    // below checks its bytes against that digest (one hash pass over the file in all).
    const leaves = new LeafHashes();
    for (const c of s.chunks) {
      if (c.multihash.code !== SHA2_256 || c.multihash.digest.length !== 32)
        throw fail(`section ${name}: chunk ${c} is not addressed by sha2-256`);
      leaves.addHash(c.multihash.digest);
    }
    const root = merkleRoot(leaves);
    if (!root.equals(Buffer.from(s.root)))
      throw fail(`section ${name}: Merkle root ${root.toString('hex')} differs from ${hex(s.root)}`);
    const keep: unknown[][] | undefined = decodedSections.has(name) ? [] : undefined;
    const isDeep = deepSections.has(name);
    const byDay = rollupSections.has(name) ? new Map<string, LeafHashes>() : undefined;
    if (byDay) rollupLeaves.set(name, byDay);
    let count = 0;
    for (let i = 0; i < s.chunks.length; i += 1) {
      const chunk = await snap.chunkBytes(s, i, true);
      if (!isArrayHead(chunk[0]) || chunk[0] === 0x80)
        throw fail(`chunk ${i} of section ${name} is not a non-empty DAG-CBOR array`);
      try {
        count += chunkRows(name, chunk, { deep, keep, isDeep, byDay });
      } catch (err) {
        throw malformed(fail, name, i)(err);
      }
      if (i % 50 === 0)
        await opts.onProgress?.({ stage: 'verify', done: si, total: names.length, detail: name });
    }
    if (count !== s.count) throw fail(`section ${name}: ${count} rows, block says ${s.count}`);
    if (keep) decoded.set(name, keep);
    sections.push({ name, count: s.count });
  }
  await snap.car.checkRest?.();
  const periods = checkPeriods(decoded, rollupLeaves, fail);
  const auditEntries = checkAudit(decoded, m.auditHead, fail);
  const badExport = checkRecordExportRows(decoded.get(RECORD_EXPORTS) ?? []);
  if (badExport) throw fail(badExport);
  const deepProblems = deep.problems(m);
  if (deepProblems.length > 0) throw fail(deepProblems[0]!);
  const chain = await checkChain(snap, opts);
  return {
    cid: snap.cid,
    kind: m.kind,
    seq: m.seq,
    prev: m.prev?.toString() ?? null,
    createdAt: m.createdAt,
    blocks: snap.car.blockCount,
    bytes: snap.car.totalBytes,
    sections,
    periods,
    auditEntries,
    chain,
    ledger: deep.totals(),
    roots: Object.fromEntries(Object.entries(m.roots).map(([k, v]) => [k, hex(v)])),
    auditHead: m.auditHead ? { seq: m.auditHead.seq, hash: hex(m.auditHead.hash) } : null,
  };
}

interface RowSinks {
  deep: DeepChecker;
  keep: unknown[][] | undefined;
  isDeep: boolean;
  byDay: Map<string, LeafHashes> | undefined;
}

/** Checks and consumes the rows of one chunk (its bytes may be a reused buffer: nothing keeps a view of them). */
function chunkRows(name: string, chunk: Uint8Array, sink: RowSinks): number {
  if (name === 'ledger_entries')
    // Millions of rows: the leading columns the balance check needs, scanned in place without a full decode.
    return scanRows(chunk, 6, (v) =>
      sink.deep.ledgerEntry(
        v[0] as number | bigint,
        v[1] as string,
        v[2] as string | null,
        v[3] as string | null,
        v[5] as number | bigint | null,
      ),
    );
  if (sink.byDay) {
    const items = splitArray(chunk);
    for (const item of items) {
      const day = firstText(item);
      let list = sink.byDay.get(day);
      if (!list) sink.byDay.set(day, (list = new LeafHashes()));
      list.addLeaf(item);
    }
    return items.length;
  }
  if (sink.keep || sink.isDeep) {
    // A plain Uint8Array view: dag-cbor then copies byte strings out (Uint8Array#slice; a Buffer's slice is a view),
    // so the decoded rows outlive the reused buffer.
    const rows = dagCbor.decode(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)) as unknown;
    if (!Array.isArray(rows) || rows.some((r) => !Array.isArray(r)))
      throw new CborFormatError('a row is not an array');
    for (const row of rows as unknown[][]) {
      sink.keep?.push(row);
      if (sink.isDeep) sink.deep.row(name, row);
    }
    return rows.length;
  }
  return countItems(chunk);
}

/** Each rolled-up day's stored hash must equal the root over its rows in the snapshot. */
function checkPeriods(
  decoded: Map<string, unknown[][]>,
  rollupLeaves: Map<string, Map<string, LeafHashes>>,
  fail: (m: string) => Error,
): number {
  const periods = decoded.get('rollup_periods');
  if (!periods) return 0;
  const job = rollupLeaves.get('job_rollups') ?? new Map<string, LeafHashes>();
  const ledger = rollupLeaves.get('ledger_rollups') ?? new Map<string, LeafHashes>();
  const none = Buffer.alloc(0);
  const seen = new Set<string>();
  for (const p of periods) {
    const day = p[0] as string;
    seen.add(day);
    // Same tree as periodHash(): the day's job rollup leaves, then its ledger rollup leaves.
    const dayLeaves = Buffer.concat([job.get(day)?.view() ?? none, ledger.get(day)?.view() ?? none]);
    if (!merkleRoot(dayLeaves).equals(Buffer.from(p[4] as Uint8Array)))
      throw fail(`rollup period ${day}: its rows do not hash to the recorded period hash`);
  }
  for (const d of [...job.keys(), ...ledger.keys()])
    if (!seen.has(d)) throw fail(`rollup rows of ${d} belong to no recorded period`);
  return periods.length;
}

function checkAudit(
  decoded: Map<string, unknown[][]>,
  head: { seq: number; hash: Uint8Array } | null,
  fail: (m: string) => Error,
): number {
  const rows = decoded.get('audit_log');
  if (!rows) return 0;
  const v = new ChainVerifier();
  for (const r of rows) {
    const e: AuditEntry = {
      seq: BigInt(r[0] as number),
      atMicros: BigInt(r[1] as number),
      actor: r[2] as string,
      action: r[3] as string,
      target: (r[4] as string | null) ?? null,
      body: JSON.parse(r[5] as string) as JsonValue,
      prevHash: Buffer.from(r[6] as Uint8Array),
      hash: Buffer.from(r[7] as Uint8Array),
    };
    v.push(e);
  }
  if (head) v.checkAnchor({ seq: BigInt(head.seq), hash: Buffer.from(head.hash) });
  if (v.problems.length > 0) throw fail(`audit log: ${v.problems[0]!.message}`);
  const last = rows[rows.length - 1];
  if ((head === null) !== (last === undefined) || (last && BigInt(last[0] as number) !== BigInt(head!.seq)))
    throw fail('the manifest audit head is not the last audit entry');
  return rows.length;
}

async function checkChain(snap: SnapshotReader, opts: VerifyOptions): Promise<VerifyReport['chain']> {
  const m = snap.manifest;
  if (m.kind !== 'snapshot') return 'not-chained';
  if (m.seq === 1) {
    if (m.prev) throw new AppError('chain_broken', `snapshot ${snap.cid} has seq 1 but names a predecessor`);
    return 'first';
  }
  if (!m.prev) throw new AppError('chain_broken', `snapshot ${snap.cid} (seq ${m.seq}) names no predecessor`);
  if (opts.linkChecked) return 'checked';
  const prevSource = await opts.loadPrevious?.(m.prev.toString());
  // An unchecked link is not a checked one: a missing predecessor fails (exit "missing"), it does not pass.
  if (!prevSource)
    throw new AppError(
      'not_found',
      `snapshot ${snap.cid} (seq ${m.seq}) names predecessor ${m.prev}, which is missing; the chain cannot be checked`,
      { missing: m.prev.toString() },
    );
  const prev = prevSource instanceof SnapshotReader ? prevSource : await SnapshotReader.open(prevSource);
  await prev.close();
  if (prev.cid !== m.prev.toString())
    throw new AppError(
      'chain_broken',
      `snapshot ${snap.cid} names predecessor ${m.prev}, but the predecessor given is ${prev.cid}`,
    );
  if (prev.manifest.kind !== 'snapshot' || prev.manifest.seq !== (m.seq ?? 0) - 1)
    throw new AppError(
      'chain_broken',
      `snapshot ${snap.cid} has seq ${m.seq}; its predecessor ${prev.cid} has seq ${prev.manifest.seq}`,
    );
  return 'checked';
}
