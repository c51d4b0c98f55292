// Consistent snapshot forgeries for tests: change rows or the manifest and recompute every chunk CID, section Merkle
// root, section block and manifest, so that every hash in the forged CAR is valid (only pinning or a signature can tell).
import { CarBufferWriter, CarReader } from '@ipld/car';
import * as dagCbor from '@ipld/dag-cbor';
import type { CID } from 'multiformats/cid';
import { cidOf } from '../src/modules/snapshots/car-io.js';
import { LeafHashes, merkleRoot } from '../src/modules/canonical/merkle.js';

type Manifest = Record<string, unknown> & {
  sections: Record<string, CID>;
  roots: Record<string, Uint8Array>;
};

export interface Forgery {
  /** Rewrites the rows of one section (decoded); return the new rows. */
  rows?: {
    section: string;
    edit: (rows: unknown[][]) => unknown[][];
    /** Rewrites the section's column list too (an older or newer format). */
    columns?: (columns: Array<[string, string]>) => Array<[string, string]>;
  };
  /** Rewrites the manifest after sections are recomputed. */
  manifest?: (m: Manifest) => void;
}

export async function forgeCar(bytes: Uint8Array, f: Forgery): Promise<{ bytes: Uint8Array; cid: string }> {
  const reader = await CarReader.fromBytes(bytes);
  const [root] = await reader.getRoots();
  const get = async (c: CID) => (await reader.get(c))!.bytes;
  const manifest = dagCbor.decode(await get(root!)) as Manifest;
  const extra: Array<{ cid: CID; bytes: Uint8Array }> = [];
  if (f.rows) {
    const name = f.rows.section;
    const section = dagCbor.decode(await get(manifest.sections[name]!)) as {
      columns: Array<[string, string]>;
      chunks: CID[];
      count: number;
      root: Uint8Array;
    };
    let rows: unknown[][] = [];
    for (const c of section.chunks) rows.push(...(dagCbor.decode(await get(c)) as unknown[][]));
    rows = f.rows.edit(rows);
    const chunkBytes = dagCbor.encode(rows);
    const chunkCid = cidOf(chunkBytes);
    // Format version 2: one leaf per chunk, its CID digest.
    const leaves = new LeafHashes();
    leaves.addHash(chunkCid.multihash.digest);
    extra.push({ cid: chunkCid, bytes: chunkBytes });
    section.chunks = [chunkCid];
    if (f.rows.columns) section.columns = f.rows.columns(section.columns);
    section.count = rows.length;
    section.root = merkleRoot(leaves);
    const sectionBytes = dagCbor.encode(section);
    const sectionCid = cidOf(sectionBytes);
    extra.push({ cid: sectionCid, bytes: sectionBytes });
    manifest.sections[name] = sectionCid;
    manifest.roots[name] = section.root;
  }
  f.manifest?.(manifest);
  const mBytes = dagCbor.encode(manifest);
  const mCid = cidOf(mBytes);
  const out = CarBufferWriter.createWriter(new ArrayBuffer(bytes.length * 2 + 1_000_000), { roots: [mCid] });
  // The original blocks first (the manifest's old block stays: harmless), then the new ones, the new root last.
  for await (const b of reader.blocks()) if (!b.cid.equals(root!)) out.write(b);
  for (const b of extra) out.write(b);
  out.write({ cid: mCid, bytes: mBytes });
  return { bytes: out.close({ resize: true }), cid: mCid.toString() };
}
