// The content address of a stored file (a record export): its bytes cut into raw leaves of FILE_CHUNK_BYTES and one
// DAG-CBOR root block linking them in order (with the file's size and SHA-256), so that the CID names the bytes
// whatever store holds them, an IPFS node can pin and serve the DAG block by block (every block < 1 MiB), and a reader
// checks each block against its CID as it streams. docs/snapshot-format.md §13 specifies it.
import { createHash, type Hash } from 'node:crypto';
import * as dagCbor from '@ipld/dag-cbor';
import { CID } from 'multiformats/cid';
import * as raw from 'multiformats/codecs/raw';
import * as Digest from 'multiformats/hashes/digest';
import { AppError } from '../../platform/errors.js';

export const FILE_DAG_TYPE = 'rty-file/1';
/** Leaf size: a quarter of Kubo's 1 MiB block limit, as `ipfs add` cuts by default. */
export const FILE_CHUNK_BYTES = 256 * 1024;
const SHA2_256 = 0x12;

export interface Block {
  cid: CID;
  bytes: Uint8Array;
}

export interface FileRoot {
  type: typeof FILE_DAG_TYPE;
  bytes: number;
  sha256: Uint8Array;
  chunks: CID[];
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
const rawCid = (b: Uint8Array) => CID.createV1(raw.code, Digest.create(SHA2_256, sha256(b)));

/** Hashes a file as it streams: `update` returns the leaf blocks it completed, `finish` the root. */
export class FileDagBuilder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly chunks: CID[] = [];
  private readonly whole: Hash = createHash('sha256');
  private total = 0;

  update(data: Uint8Array): Block[] {
    this.whole.update(data);
    this.total += data.length;
    const out: Block[] = [];
    let buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    while (this.pendingBytes + buf.length >= FILE_CHUNK_BYTES) {
      const take = FILE_CHUNK_BYTES - this.pendingBytes;
      this.pending.push(buf.subarray(0, take));
      buf = buf.subarray(take);
      out.push(this.leaf());
    }
    if (buf.length > 0) {
      // Copied: the caller may reuse its buffer before the leaf is complete.
      this.pending.push(Buffer.from(buf));
      this.pendingBytes += buf.length;
    }
    return out;
  }

  private leaf(): Block {
    const bytes = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    const cid = rawCid(bytes);
    this.chunks.push(cid);
    return { cid, bytes };
  }

  /** The last (short) leaf, if any, and the root block; `sha256` is the hex digest of the whole file. */
  finish(): { leaves: Block[]; root: Block; sha256: string; bytes: number } {
    const leaves = this.pendingBytes > 0 ? [this.leaf()] : [];
    const digest = this.whole.digest();
    const node: FileRoot = { type: FILE_DAG_TYPE, bytes: this.total, sha256: digest, chunks: this.chunks };
    const bytes = dagCbor.encode(node);
    const root = { cid: CID.createV1(dagCbor.code, Digest.create(SHA2_256, sha256(bytes))), bytes };
    return { leaves, root, sha256: digest.toString('hex'), bytes: this.total };
  }
}

/** The CID of bytes held in memory (a test's or a verifier's shortcut over FileDagBuilder). */
export function fileCid(data: Uint8Array): string {
  const b = new FileDagBuilder();
  b.update(data);
  return b.finish().root.cid.toString();
}

/** Checks a block's bytes against its CID (sha2-256 only); throws integrity_failed naming it. */
export function checkBlock(cid: CID, bytes: Uint8Array, what: string): void {
  if (cid.multihash.code !== SHA2_256 || !sha256(bytes).equals(cid.multihash.digest))
    throw new AppError('integrity_failed', `${what}: block ${cid} does not match its CID`, {
      block: cid.toString(),
    });
}

/** A verified root block of a file DAG, or integrity_failed when it is not one. */
export function parseFileRoot(cid: CID, bytes: Uint8Array): FileRoot {
  checkBlock(cid, bytes, `file ${cid}`);
  if (cid.code !== dagCbor.code) throw new AppError('integrity_failed', `file ${cid}: root is not DAG-CBOR`);
  const v = dagCbor.decode<Partial<FileRoot>>(bytes);
  const chunks = Array.isArray(v.chunks) ? v.chunks.map((c) => CID.asCID(c)) : [];
  if (
    v.type !== FILE_DAG_TYPE ||
    typeof v.bytes !== 'number' ||
    !(v.sha256 instanceof Uint8Array) ||
    !Array.isArray(v.chunks) ||
    chunks.some((c) => !c || c.code !== raw.code)
  )
    throw new AppError('integrity_failed', `file ${cid}: root block is not a ${FILE_DAG_TYPE} node`);
  return { type: FILE_DAG_TYPE, bytes: v.bytes, sha256: v.sha256, chunks: chunks as CID[] };
}

/** Parses a CID given as text, naming it when it is not one. */
export function parseCid(text: string): CID {
  try {
    return CID.parse(text);
  } catch {
    throw new AppError('invalid_request', `not a CID: ${text}`);
  }
}
