// RFC 6962 Merkle trees (pure): domain-separated leaf/node hashes, roots, audit paths and inclusion checks.
import * as nodeCrypto from 'node:crypto';

const HASH_BYTES = 32;

// One-shot hashing (Node >= 20.12) avoids a Hash object per leaf; millions of leaves make that matter.
const oneShot = (nodeCrypto as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => Buffer }).hash;

export function sha256(...parts: Uint8Array[]): Buffer {
  if (oneShot) return oneShot('sha256', parts.length === 1 ? parts[0]! : Buffer.concat(parts), 'buffer');
  const h = nodeCrypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** H(0x00 || leaf). */
export function leafHash(leaf: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(leaf.length + 1);
  b[0] = 0x00;
  b.set(leaf, 1);
  return sha256(b);
}

/** H(0x01 || left || right). */
const nodeScratch = Buffer.allocUnsafe(1 + 2 * HASH_BYTES);

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  // Children are 32-byte hashes: one reused input buffer instead of one allocation per node.
  const b =
    left.length === HASH_BYTES && right.length === HASH_BYTES
      ? nodeScratch
      : Buffer.allocUnsafe(1 + left.length + right.length);
  b[0] = 0x01;
  b.set(left, 1);
  b.set(right, 1 + left.length);
  return sha256(b);
}

/**
 * The leaf hash of a snapshot chunk (format version 2): SHA-256 of the chunk block's bytes, i.e. the digest of its
 * CID, so checking a block against its CID and building the section tree share one hash pass. RFC 6962's 0x00 prefix
 * only keeps leaf preimages apart from node preimages (which begin 0x01); a chunk is a DAG-CBOR array, whose first
 * byte is 0x80..0x9b, so it can never be a node preimage. Callers must refuse a chunk that is not an array.
 */
export function chunkLeafHash(chunk: Uint8Array): Buffer {
  if (!isArrayHead(chunk[0])) throw new RangeError('a chunk leaf must be a DAG-CBOR array');
  return sha256(chunk);
}

/** 0x80..0x97 (short array) or 0x98..0x9b (array with a 1..8-byte length). */
export const isArrayHead = (b: number | undefined): boolean => b !== undefined && b >= 0x80 && b <= 0x9b;

/** The root of an empty tree is the hash of the empty string (RFC 6962 2.1). */
export const EMPTY_ROOT: Buffer = sha256();

/** Collects leaf hashes into one contiguous buffer (32 bytes each): a million leaves cost 32 MB, not a million objects. */
export class LeafHashes {
  private buf = Buffer.alloc(HASH_BYTES * 1024);
  private n = 0;

  get size(): number {
    return this.n;
  }

  addLeaf(leaf: Uint8Array): void {
    this.addHash(leafHash(leaf));
  }

  addHash(hash: Uint8Array): void {
    if ((this.n + 1) * HASH_BYTES > this.buf.length) {
      const bigger = Buffer.alloc(this.buf.length * 2);
      this.buf.copy(bigger, 0, 0, this.n * HASH_BYTES);
      this.buf = bigger;
    }
    this.buf.set(hash, this.n * HASH_BYTES);
    this.n += 1;
  }

  hashAt(i: number): Buffer {
    return this.buf.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  }

  /** All leaf hashes, concatenated. */
  view(): Buffer {
    return this.buf.subarray(0, this.n * HASH_BYTES);
  }
}

/**
 * Bottom-up pairing where an unpaired last node is promoted unchanged: this yields exactly the RFC 6962
 * tree (split at the largest power of two below n) without recursion.
 */
function nextLevel(level: Buffer): Buffer {
  const count = level.length / HASH_BYTES;
  const out = Buffer.alloc(Math.ceil(count / 2) * HASH_BYTES);
  for (let i = 0; i + 1 < count; i += 2) {
    const l = level.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
    const r = level.subarray((i + 1) * HASH_BYTES, (i + 2) * HASH_BYTES);
    nodeHash(l, r).copy(out, (i / 2) * HASH_BYTES);
  }
  if (count % 2 === 1) level.copy(out, ((count - 1) / 2) * HASH_BYTES, (count - 1) * HASH_BYTES);
  return out;
}

export function merkleRoot(leaves: LeafHashes | Buffer): Buffer {
  let level = leaves instanceof LeafHashes ? leaves.view() : leaves;
  if (level.length === 0) return Buffer.from(EMPTY_ROOT);
  while (level.length > HASH_BYTES) level = nextLevel(level);
  return Buffer.from(level);
}

/** The audit path (sibling hashes, bottom-up) of leaf `index`, as RFC 6962 PATH(m, D[n]) orders it. */
export function auditPath(leaves: LeafHashes | Buffer, index: number): Buffer[] {
  let level = leaves instanceof LeafHashes ? leaves.view() : leaves;
  let count = level.length / HASH_BYTES;
  if (!Number.isInteger(index) || index < 0 || index >= count)
    throw new RangeError(`leaf index ${index} outside a tree of ${count}`);
  const path: Buffer[] = [];
  let i = index;
  while (count > 1) {
    const sibling = i % 2 === 1 ? i - 1 : i + 1;
    if (sibling < count)
      path.push(Buffer.from(level.subarray(sibling * HASH_BYTES, (sibling + 1) * HASH_BYTES)));
    level = nextLevel(level);
    count = level.length / HASH_BYTES;
    i = Math.floor(i / 2);
  }
  return path;
}

/** RFC 9162 2.1.3.2: recomputes the root from a leaf hash, its index, the tree size and the audit path. */
export function rootFromPath(leaf: Uint8Array, index: number, size: number, path: Uint8Array[]): Buffer {
  if (!Number.isInteger(index) || !Number.isInteger(size) || index < 0 || index >= size)
    throw new RangeError(`leaf index ${index} outside a tree of ${size}`);
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of path) {
    if (sn === 0) throw new RangeError('audit path is longer than the tree is deep');
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new RangeError('audit path is shorter than the tree is deep');
  return r;
}

export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  size: number,
  path: Uint8Array[],
  root: Uint8Array,
): boolean {
  try {
    return rootFromPath(leafHash(leaf), index, size, path).equals(root);
  } catch {
    return false;
  }
}

/**
 * The same RFC 6962 root, computed as leaves arrive with O(log n) memory: a stack of perfect subtrees (merged when two
 * have the same height), folded right to left at the end (the split at the largest power of two below n).
 */
export class StreamingMerkle {
  private readonly stack: Array<{ height: number; hash: Buffer }> = [];
  size = 0;

  addHash(hash: Uint8Array): void {
    let node: { height: number; hash: Buffer } = { height: 0, hash: Buffer.from(hash) };
    while (this.stack.length > 0 && this.stack[this.stack.length - 1]!.height === node.height) {
      const left = this.stack.pop()!;
      node = { height: node.height + 1, hash: nodeHash(left.hash, node.hash) };
    }
    this.stack.push(node);
    this.size += 1;
  }

  root(): Buffer {
    if (this.stack.length === 0) return Buffer.from(EMPTY_ROOT);
    let r = this.stack[this.stack.length - 1]!.hash;
    for (let i = this.stack.length - 2; i >= 0; i -= 1) r = nodeHash(this.stack[i]!.hash, r);
    return Buffer.from(r);
  }
}
