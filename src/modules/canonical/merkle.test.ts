// Unit tests of the RFC 6962 Merkle tree against the recursive definition, and of inclusion proofs.
import { describe, expect, it } from 'vitest';
import {
  EMPTY_ROOT,
  LeafHashes,
  auditPath,
  leafHash,
  merkleRoot,
  nodeHash,
  sha256,
  verifyInclusion,
} from './merkle.js';

const leaf = (i: number) => Buffer.from(`leaf-${i}`);

/** MTH(D[n]) exactly as RFC 6962 2.1 defines it. */
function mth(d: Buffer[]): Buffer {
  if (d.length === 0) return sha256();
  if (d.length === 1) return leafHash(d[0]!);
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return nodeHash(mth(d.slice(0, k)), mth(d.slice(k)));
}

function leaves(n: number): { data: Buffer[]; hashes: LeafHashes } {
  const data = Array.from({ length: n }, (_, i) => leaf(i));
  const hashes = new LeafHashes();
  for (const x of data) hashes.addLeaf(x);
  return { data, hashes };
}

describe('RFC 6962 Merkle tree', () => {
  it('uses domain-separated leaf and node hashes', () => {
    expect(leafHash(Buffer.from('a'))).toEqual(sha256(Buffer.from([0]), Buffer.from('a')));
    expect(nodeHash(Buffer.from('l'), Buffer.from('r'))).toEqual(sha256(Buffer.from([1, 0x6c, 0x72])));
    expect(merkleRoot(new LeafHashes())).toEqual(EMPTY_ROOT);
  });

  it('matches the recursive definition for every size from 1 to 40 (and a grown buffer)', () => {
    for (let n = 1; n <= 40; n += 1) {
      const { data, hashes } = leaves(n);
      expect(merkleRoot(hashes).toString('hex'), `n=${n}`).toBe(mth(data).toString('hex'));
    }
    const { data, hashes } = leaves(1500);
    expect(merkleRoot(hashes)).toEqual(mth(data));
  });

  it('every leaf of every tree up to 33 has a proof that validates against the root', () => {
    for (let n = 1; n <= 33; n += 1) {
      const { data, hashes } = leaves(n);
      const root = merkleRoot(hashes);
      for (let i = 0; i < n; i += 1) {
        expect(verifyInclusion(data[i]!, i, n, auditPath(hashes, i), root), `n=${n} i=${i}`).toBe(true);
      }
    }
  });

  it('a proof fails for a changed value, another index, another size or another root', () => {
    const { data, hashes } = leaves(21);
    const root = merkleRoot(hashes);
    const path = auditPath(hashes, 13);
    expect(verifyInclusion(data[13]!, 13, 21, path, root)).toBe(true);
    expect(verifyInclusion(Buffer.from('leaf-13x'), 13, 21, path, root)).toBe(false);
    expect(verifyInclusion(data[13]!, 12, 21, path, root)).toBe(false);
    expect(verifyInclusion(data[13]!, 13, 14, path, root)).toBe(false);
    expect(verifyInclusion(data[13]!, 13, 21, path, merkleRoot(leaves(22).hashes))).toBe(false);
    expect(verifyInclusion(data[13]!, 13, 21, path.slice(1), root)).toBe(false);
  });
});

describe('chunk leaves (snapshot format version 2)', () => {
  it('hash a chunk with no prefix (its CID digest) and refuse bytes that are not a CBOR array', async () => {
    const { chunkLeafHash } = await import('./merkle.js');
    const chunk = Buffer.from([0x82, 0x81, 0x01, 0x81, 0x02]); // [[1], [2]]
    expect(chunkLeafHash(chunk)).toEqual(sha256(chunk));
    // A node preimage (0x01 || l || r) can never pass as a chunk leaf.
    expect(() => chunkLeafHash(Buffer.concat([Buffer.of(1), Buffer.alloc(64)]))).toThrow(/DAG-CBOR array/);
    expect(() => chunkLeafHash(Buffer.of(0xa0))).toThrow(/DAG-CBOR array/);
    expect(() => chunkLeafHash(Buffer.alloc(0))).toThrow(/DAG-CBOR array/);
  });
});

describe('streaming Merkle root', () => {
  it('equals the RFC 6962 root for every size from 0 to 130', async () => {
    const { LeafHashes, StreamingMerkle, leafHash, merkleRoot } = await import('./merkle.js');
    for (let n = 0; n <= 130; n += 1) {
      const all = new LeafHashes();
      const s = new StreamingMerkle();
      for (let i = 0; i < n; i += 1) {
        const h = leafHash(Buffer.from(`leaf ${i}`));
        all.addHash(h);
        s.addHash(h);
      }
      expect(s.root().toString('hex'), `n=${n}`).toBe(merkleRoot(all).toString('hex'));
    }
  });
});
