// A CAR file read with bounded memory: one streaming pass indexes the blocks and checks each against its CID in file
// order (naming the first bad one), then blocks are read back by offset on demand (each re-checked).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { CarIndexer } from '@ipld/car/indexer';
import { CID } from 'multiformats/cid';
import { AppError } from '../../platform/errors.js';
import { cidOf } from './car-io.js';

const SHA2_256 = 0x12;

interface Entry {
  offset: number;
  length: number;
  index: number;
}

function check(cid: CID, bytes: Uint8Array, index: number, file: string): void {
  if (cid.multihash.code !== SHA2_256)
    throw new AppError(
      'integrity_failed',
      `block ${index} (${cid}) of ${file} uses an unsupported hash 0x${cid.multihash.code.toString(16)}`,
    );
  if (!createHash('sha256').update(bytes).digest().equals(cid.multihash.digest))
    throw new AppError(
      'integrity_failed',
      `bad block ${cid} (block ${index} of ${file}): its bytes hash to ${cidOf(bytes)}`,
      { block: cid.toString(), index },
    );
}

export class CarFile {
  private constructor(
    readonly path: string,
    readonly root: CID,
    private readonly fh: FileHandle,
    private readonly index: Map<string, Entry>,
    readonly totalBytes: number,
  ) {}

  get blockCount(): number {
    return this.index.size;
  }

  /** Indexes and hash-checks every block in file order; memory: the index (~100 B a block) and one block. */
  static async open(path: string): Promise<CarFile> {
    const size = (await stat(path)).size;
    const index = new Map<string, Entry>();
    let indexer: CarIndexer;
    try {
      indexer = await CarIndexer.fromIterable(createReadStream(path, { highWaterMark: 1 << 20 }));
    } catch (err) {
      throw new AppError('integrity_failed', `not a readable CAR file: ${(err as Error).message}`);
    }
    const roots = await indexer.getRoots();
    if (roots.length !== 1)
      throw new AppError('integrity_failed', `expected one root, found ${roots.length}`);
    let n = 0;
    try {
      for await (const b of indexer) {
        index.set(b.cid.toString(), { offset: b.blockOffset, length: b.blockLength, index: n });
        n += 1;
      }
    } catch (err) {
      throw new AppError(
        'integrity_failed',
        `CAR framing broken after block ${n}: ${(err as Error).message}`,
        {
          index: n,
        },
      );
    }
    const fh = await open(path, 'r');
    const car = new CarFile(path, roots[0]!, fh, index, size);
    try {
      // File order: the first bad block in the file is the one named.
      const ordered = [...index.entries()].sort((a, b) => a[1].offset - b[1].offset);
      for (const [cid, e] of ordered) check(CID.parse(cid), await car.read(e), e.index, path);
    } catch (err) {
      await fh.close();
      throw err;
    }
    return car;
  }

  private async read(e: Entry): Promise<Uint8Array> {
    const buf = Buffer.allocUnsafe(e.length);
    const { bytesRead } = await this.fh.read(buf, 0, e.length, e.offset);
    if (bytesRead !== e.length)
      throw new AppError('integrity_failed', `${this.path} was truncated while read`);
    return buf;
  }

  /** The block's bytes (checked again against its CID), or undefined when the file has no such block. */
  async get(cid: CID): Promise<Uint8Array | undefined> {
    const e = this.index.get(cid.toString());
    if (!e) return undefined;
    const bytes = await this.read(e);
    check(cid, bytes, e.index, this.path);
    return bytes;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
