// CAR files: a streaming writer whose root is set once known, and a reader that checks every block's bytes against
// its CID (sha2-256) and names the first bad block (@ipld/car itself does not check).
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CarBlockIterator } from '@ipld/car/iterator';
import { CarWriter } from '@ipld/car/writer';
import * as dagCbor from '@ipld/dag-cbor';
import { CID } from 'multiformats/cid';
import * as Digest from 'multiformats/hashes/digest';
import { AppError } from '../../platform/errors.js';

type BlockWriter = ReturnType<typeof CarWriter.create>['writer'];

const SHA2_256 = 0x12;

export function cidOf(bytes: Uint8Array): CID {
  const hash = createHash('sha256').update(bytes).digest();
  return CID.createV1(dagCbor.code, Digest.create(SHA2_256, hash));
}

export interface Block {
  cid: CID;
  bytes: Uint8Array;
}

/** Writes blocks to a file as they come; `finish(root)` rewrites the header (same length) with the real root. */
export class CarFileWriter {
  private readonly writer: BlockWriter;
  private readonly done: Promise<void>;
  bytes = 0;
  blocks = 0;

  private constructor(
    readonly path: string,
    w: { writer: BlockWriter; out: AsyncIterable<Uint8Array> },
  ) {
    this.writer = w.writer;
    this.done = pipeline(Readable.from(w.out), createWriteStream(path));
  }

  static create(path: string): CarFileWriter {
    // A placeholder root of the same codec and hash encodes to the same length as the real one.
    return new CarFileWriter(path, CarWriter.create([cidOf(new Uint8Array(0))]));
  }

  async put(block: Block): Promise<void> {
    await this.writer.put(block);
    this.bytes += block.bytes.length + block.cid.bytes.length;
    this.blocks += 1;
  }

  async finish(root: CID): Promise<void> {
    await this.writer.close();
    await this.done;
    const fh = await open(this.path, 'r+');
    try {
      await CarWriter.updateRootsInFile(fh, [root]);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Abandons the file (the caller removes it). */
  async abort(): Promise<void> {
    await this.writer.close().catch(() => undefined);
    await this.done.catch(() => undefined);
  }
}

export interface VerifiedCar {
  root: CID;
  blocks: Map<string, Uint8Array>;
  totalBytes: number;
}

/** Parses a CAR and checks each block against its CID, in file order; the first mismatch is named. */
export async function readVerifiedCar(bytes: Uint8Array): Promise<VerifiedCar> {
  let iterator: CarBlockIterator;
  try {
    iterator = await CarBlockIterator.fromBytes(bytes);
  } catch (err) {
    throw new AppError('integrity_failed', `not a readable CAR file: ${(err as Error).message}`);
  }
  const roots = await iterator.getRoots();
  if (roots.length !== 1) throw new AppError('integrity_failed', `expected one root, found ${roots.length}`);
  const blocks = new Map<string, Uint8Array>();
  let index = 0;
  try {
    for await (const block of iterator) {
      const mh = block.cid.multihash;
      if (mh.code !== SHA2_256)
        throw new AppError(
          'integrity_failed',
          `block ${index} (${block.cid}) uses an unsupported hash 0x${mh.code.toString(16)}`,
        );
      const actual = createHash('sha256').update(block.bytes).digest();
      if (!actual.equals(mh.digest)) {
        throw new AppError(
          'integrity_failed',
          `bad block ${block.cid} (block ${index}): its bytes hash to ${cidOf(block.bytes)}`,
          { block: block.cid.toString(), index },
        );
      }
      blocks.set(block.cid.toString(), block.bytes);
      index += 1;
    }
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw new AppError(
      'integrity_failed',
      `CAR framing broken after block ${index}: ${(err as Error).message}`,
      {
        index,
      },
    );
  }
  return { root: roots[0]!, blocks, totalBytes: bytes.length };
}
