// The file DAG (pure): the CID depends only on the bytes (not on how they were streamed), leaves are cut at
// FILE_CHUNK_BYTES, the root names size and SHA-256, and a root that is not one is refused.
import { createHash } from 'node:crypto';
import * as dagCbor from '@ipld/dag-cbor';
import { CID } from 'multiformats/cid';
import * as Digest from 'multiformats/hashes/digest';
import { describe, expect, it } from 'vitest';
import { FILE_CHUNK_BYTES, FileDagBuilder, fileCid, parseFileRoot } from './index.js';

const bytesOf = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + (i >> 9)) & 0xff));

function streamed(data: Buffer, piece: number) {
  const b = new FileDagBuilder();
  const leaves = [];
  for (let i = 0; i < data.length; i += piece) leaves.push(...b.update(data.subarray(i, i + piece)));
  const done = b.finish();
  return { ...done, leaves: [...leaves, ...done.leaves] };
}

describe('file DAG', () => {
  it('gives the same CID however the bytes are cut into writes, and cuts leaves at FILE_CHUNK_BYTES', () => {
    for (const n of [
      0,
      1,
      FILE_CHUNK_BYTES - 1,
      FILE_CHUNK_BYTES,
      FILE_CHUNK_BYTES + 1,
      3 * FILE_CHUNK_BYTES + 5,
    ]) {
      const data = bytesOf(n);
      const one = streamed(data, Math.max(n, 1));
      const odd = streamed(data, 4093);
      expect(odd.root.cid.toString(), `${n} bytes`).toBe(one.root.cid.toString());
      expect(one.root.cid.toString()).toBe(fileCid(data));
      expect(one.leaves.map((l) => l.bytes.length)).toEqual(
        Array.from({ length: Math.ceil(n / FILE_CHUNK_BYTES) }, (_, i) =>
          Math.min(FILE_CHUNK_BYTES, n - i * FILE_CHUNK_BYTES),
        ),
      );
      // Buffer.equals: a deep toEqual over ~800 KB is slow.
      expect(Buffer.concat(one.leaves.map((l) => l.bytes)).equals(data)).toBe(true);
      expect(one.sha256).toBe(createHash('sha256').update(data).digest('hex'));
      const root = parseFileRoot(one.root.cid, one.root.bytes);
      expect(root.bytes).toBe(n);
      expect(root.chunks.map(String)).toEqual(one.leaves.map((l) => l.cid.toString()));
    }
  });

  it('changes the CID when one byte changes', () => {
    const data = bytesOf(FILE_CHUNK_BYTES + 10);
    const other = Buffer.from(data);
    other[FILE_CHUNK_BYTES + 3]! ^= 1;
    expect(fileCid(other)).not.toBe(fileCid(data));
  });

  it('refuses a root whose bytes do not match its CID, or that is not a file node', () => {
    const { root } = streamed(bytesOf(10), 10);
    const forged = Buffer.from(root.bytes);
    forged[forged.length - 1]! ^= 1;
    expect(() => parseFileRoot(root.cid, forged)).toThrow(/does not match its CID/);
    const notFile = dagCbor.encode({ hello: 'world' });
    const cid = CID.createV1(
      dagCbor.code,
      Digest.create(0x12, createHash('sha256').update(notFile).digest()),
    );
    expect(() => parseFileRoot(cid, notFile)).toThrow(/is not a rty-file\/1 node/);
  });
});
