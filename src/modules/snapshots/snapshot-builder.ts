// Writes sections into a CAR: rows stream from a PostgreSQL cursor (or any source), are encoded once each and packed
// into chunk blocks of bounded size; each chunk is one Merkle leaf, its CID digest (format version 2).
import { randomBytes } from 'node:crypto';
import type { CID } from 'multiformats/cid';
import type { PoolClient } from '../../stores/postgres/pool.js';
import { encodeArrayOfEncoded } from './cbor-items.js';
import { CarFileWriter, cidOf } from './car-io.js';
import {
  SNAPSHOT_FORMAT_VERSION,
  columnsOf,
  encodeManifest,
  encodeSectionBlock,
  type Manifest,
} from './manifest.js';
import { LeafHashes, merkleRoot } from '../canonical/index.js';
import { encodeRow, rowValues, selectSql, type Column, type TableSpec } from '../canonical/index.js';

export interface SectionSummary {
  name: string;
  cid: CID;
  count: number;
  root: Buffer;
}

export interface ChunkLimits {
  rows: number;
  bytes: number;
}

export async function writeSection(
  car: CarFileWriter,
  name: string,
  columns: Column[],
  rows: AsyncIterable<Uint8Array>,
  limits: ChunkLimits,
  onRows?: (n: number) => void | Promise<void>,
): Promise<SectionSummary> {
  const leaves = new LeafHashes();
  const chunks: CID[] = [];
  let count = 0;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    if (pending.length === 0) return;
    const bytes = encodeArrayOfEncoded(pending);
    const cid = cidOf(bytes);
    await car.put({ cid, bytes });
    chunks.push(cid);
    // The chunk's CID digest is its leaf hash: no per-row hashing (see chunkLeafHash).
    leaves.addHash(cid.multihash.digest);
    count += pending.length;
    await onRows?.(pending.length);
    pending = [];
    pendingBytes = 0;
  };
  for await (const row of rows) {
    pending.push(row);
    pendingBytes += row.length;
    if (pending.length >= limits.rows || pendingBytes >= limits.bytes) await flush();
  }
  await flush();
  const root = merkleRoot(leaves);
  const bytes = encodeSectionBlock({ name, columns: columnsOf(columns), count, root, chunks });
  const cid = cidOf(bytes);
  await car.put({ cid, bytes });
  return { name, cid, count, root };
}

/** Writes the manifest over the written sections as the CAR's root block and finishes the CAR. */
export async function finishWithManifest(
  car: CarFileWriter,
  head: Omit<Manifest, 'version' | 'roots' | 'sections'>,
  sections: SectionSummary[],
): Promise<{ cid: CID; manifest: Manifest }> {
  const manifest: Manifest = {
    version: SNAPSHOT_FORMAT_VERSION,
    ...head,
    roots: Object.fromEntries(sections.map((s) => [s.name, s.root])),
    sections: Object.fromEntries(sections.map((s) => [s.name, s.cid])),
  };
  const bytes = encodeManifest(manifest);
  const cid = cidOf(bytes);
  await car.put({ cid, bytes });
  await car.finish(cid);
  return { cid, manifest };
}

/** Encoded rows of a table in key order, read through a cursor in the caller's (repeatable-read) transaction. */
export async function* tableRows(
  tx: PoolClient,
  spec: TableSpec,
  where = '',
  params: unknown[] = [],
  fetchRows = 5000,
): AsyncIterable<Uint8Array> {
  const cursor = `snap_${randomBytes(6).toString('hex')}`;
  await tx.query(`declare ${cursor} no scroll cursor for ${selectSql(spec, where)}`, params);
  try {
    for (;;) {
      // Array rows: no per-row object with named keys (a snapshot reads millions of them).
      const r = await tx.query<unknown[]>({ text: `fetch ${fetchRows} from ${cursor}`, rowMode: 'array' });
      for (const row of r.rows) yield encodeRow(rowValues(spec, row));
      if (r.rows.length < fetchRows) break;
    }
  } finally {
    await tx.query(`close ${cursor}`);
  }
}

export async function* arrayRows(rows: unknown[][]): AsyncIterable<Uint8Array> {
  for (const r of rows) yield encodeRow(r as Parameters<typeof encodeRow>[0]);
}
