// Format version 2 on a small CAR written without a database: a section's Merkle leaves are its chunk blocks (leaf
// hash = the chunk's CID digest), proofs carry the chunk, version 1 is refused by name, and the streaming verify —
// which hashes each block once, when it is read — still names the first bad block in file order and checks blocks
// no link reaches.
import { createHash } from 'node:crypto';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CarBufferWriter, CarReader } from '@ipld/car';
import * as dagCbor from '@ipld/dag-cbor';
import type { CID } from 'multiformats/cid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { indexCar, tempArchiveDir } from '../../../test/archive-harness.js';
import { snapshotSections } from '../canonical/sections.js';
import { encodeRow } from '../canonical/table-codec.js';
import { CarFileWriter, cidOf } from './car-io.js';
import { finishWithManifest, writeSection } from './snapshot-builder.js';
import { SnapshotReader } from './snapshot-reader.js';
import { verifySnapshot, verifySnapshotFile } from './snapshot-verify.js';
import { buildProof, checkProof } from './proofs.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
/** MTH exactly as RFC 6962 2.1 defines it, over given leaf hashes. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha(new Uint8Array(0));
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha(Buffer.concat([Buffer.of(1), mth(leaves.slice(0, k)), mth(leaves.slice(k))]));
}

const spec = (n: string) => snapshotSections.find((s) => s.name === n)!;
const ns = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
let dir: { dir: string; remove(): Promise<void> };
let file: string;
let cid: string;

beforeAll(async () => {
  dir = await tempArchiveDir();
  file = join(dir.dir, 'small.car');
  const car = CarFileWriter.create(file);
  const sums = [0n, 0n, 0n];
  async function* entries() {
    for (let id = 1n; id <= 300n; id += 1n) {
      const n = Number(id % 3n);
      sums[n]! += 1000n + id;
      yield encodeRow([
        id,
        'topup',
        ns(n),
        null,
        null,
        1000n + id,
        `k${id}`,
        null,
        1_767_225_600_000_000n + id,
      ]);
    }
  }
  const limits = { rows: 50, bytes: 64 * 1024 };
  const e = await writeSection(car, 'ledger_entries', spec('ledger_entries').columns, entries(), limits);
  async function* balances() {
    for (let i = 0; i < 3; i += 1) yield encodeRow([ns(i), sums[i]!, 0n, 0n, 0n]);
  }
  const b = await writeSection(car, 'credit_balances', spec('credit_balances').columns, balances(), {
    rows: 2,
    bytes: 64 * 1024,
  });
  const total = sums.reduce((a, x) => a + x, 0n).toString();
  const r = await finishWithManifest(
    car,
    {
      kind: 'snapshot',
      seq: 1,
      prev: null,
      createdAt: '2026-01-01T00:00:00.000Z',
      network: { configVersion: null, configDigest: null },
      rollupRange: null,
      auditHead: null,
      ledger: {
        entries: '300',
        lastEntryId: '300',
        available: total,
        reserved: '0',
        bonusAvailable: '0',
        earned: '0',
        paidOut: '0',
        pendingHolds: '0',
        pendingHeld: '0',
      },
      origin: null,
    },
    [b, e],
  );
  cid = r.cid.toString();
});
afterAll(() => dir.remove());

async function rewrite(name: string, edit: (blocks: Array<{ cid: CID; bytes: Uint8Array }>) => void) {
  const bytes = await readFile(file);
  const reader = await CarReader.fromBytes(bytes);
  const blocks: Array<{ cid: CID; bytes: Uint8Array }> = [];
  for await (const b of reader.blocks()) blocks.push({ cid: b.cid, bytes: new Uint8Array(b.bytes) });
  const roots = await reader.getRoots();
  edit(blocks);
  const out = CarBufferWriter.createWriter(new ArrayBuffer(bytes.length * 2 + 4096), { roots });
  for (const b of blocks) out.write(b);
  const path = join(dir.dir, name);
  await writeFile(path, out.close({ resize: true }));
  return path;
}

describe('snapshot format version 2', () => {
  it('a section root is the RFC 6962 root over the SHA-256 of its chunk blocks, in order', async () => {
    const snap = await SnapshotReader.open(await readFile(file), cid);
    expect(snap.manifest.version).toBe(2);
    const s = await snap.section('ledger_entries');
    expect(s.chunks.length).toBe(6);
    const leaves: Buffer[] = [];
    let rows = 0;
    for (let i = 0; i < s.chunks.length; i += 1) {
      const bytes = await snap.chunkBytes(s, i);
      expect(sha(bytes).equals(Buffer.from(s.chunks[i]!.multihash.digest))).toBe(true);
      leaves.push(sha(bytes));
      rows += (dagCbor.decode(bytes) as unknown[]).length;
    }
    expect(rows).toBe(s.count);
    expect(mth(leaves).toString('hex')).toBe(Buffer.from(s.root).toString('hex'));
    expect(Buffer.from(snap.manifest.roots.ledger_entries!).equals(Buffer.from(s.root))).toBe(true);
    const streamed = await verifySnapshotFile(file, { expectedCid: cid });
    const inMemory = await verifySnapshot(await readFile(file), { expectedCid: cid });
    expect(streamed).toEqual(inMemory);
    expect(streamed.ledger).toMatchObject({ entries: '300', lastEntryId: '300' });
  });

  it('a proof carries the chunk and the path over chunk hashes, and checks against the section root only', async () => {
    const snap = await SnapshotReader.open(await readFile(file), cid);
    const proof = await buildProof(snap, 'ledger_entries', (r) => r[0] === 160);
    expect(proof).toMatchObject({ version: 2, chunk: 3, chunks: 6, row: 9 });
    expect(proof.path.length).toBe(3);
    const root = Buffer.from(snap.manifest.roots.ledger_entries!).toString('hex');
    expect(checkProof(proof, root)).toEqual({ ok: true });
    expect(checkProof({ ...proof, chunk: 2 }, root).ok).toBe(false);
    expect(checkProof({ ...proof, row: 10 }, root)).toEqual({
      ok: false,
      reason: 'the record shown differs from the record in the chunk',
    });
    const other = Buffer.from(snap.manifest.roots.credit_balances!).toString('hex');
    expect(checkProof(proof, other).ok).toBe(false);
  });

  it('a version 1 manifest is refused by its version, streaming and in memory', async () => {
    const bytes = await readFile(file);
    const reader = await CarReader.fromBytes(bytes);
    const [root] = await reader.getRoots();
    const m = dagCbor.decode((await reader.get(root!))!.bytes) as Record<string, unknown>;
    const mBytes = dagCbor.encode({ ...m, version: 1 });
    const mCid = cidOf(mBytes);
    const out = CarBufferWriter.createWriter(new ArrayBuffer(bytes.length * 2), { roots: [mCid] });
    for await (const b of reader.blocks()) if (!b.cid.equals(root!)) out.write(b);
    out.write({ cid: mCid, bytes: mBytes });
    const path = join(dir.dir, 'v1.car');
    await writeFile(path, out.close({ resize: true }));
    const message = /snapshot format version 1 is not supported: this build reads version 2 only/;
    await expect(verifySnapshotFile(path, { expectedCid: mCid.toString() })).rejects.toThrow(message);
    await expect(verifySnapshot(await readFile(path))).rejects.toThrow(message);
  });

  it('streaming: with the manifest (read first) and an early chunk both flipped, the early chunk is named', async () => {
    const blocks = await indexCar(await readFile(file));
    const victim = blocks[2]!;
    const last = blocks.at(-1)!;
    const bytes = Buffer.from(await readFile(file));
    bytes[victim.blockOffset + 5]! ^= 0x01;
    bytes[last.blockOffset + 3]! ^= 0x01;
    const path = join(dir.dir, 'two-flips.car');
    await writeFile(path, bytes);
    await expect(verifySnapshotFile(path, { expectedCid: cid })).rejects.toThrow(
      `bad block ${victim.cid} (block 2 of ${path})`,
    );
  });

  it('streaming: a bad block no link reaches is still caught, and a truncated file is named as such', async () => {
    const path = await rewrite('stray.car', (blocks) => {
      const stray = dagCbor.encode(['stray']);
      blocks.splice(1, 0, { cid: cidOf(stray), bytes: dagCbor.encode(['strays']) });
    });
    await expect(verifySnapshotFile(path, { expectedCid: cid })).rejects.toThrow(
      /bad block .* \(block 1 of /,
    );
    const cut = join(dir.dir, 'cut.car');
    await writeFile(cut, await readFile(file));
    await truncate(cut, (await readFile(file)).length - 100);
    await expect(verifySnapshotFile(cut, { expectedCid: cid })).rejects.toThrow(
      /CAR framing broken after block \d+: block \d+ runs past the end of the file \(truncated\)/,
    );
  });
});
