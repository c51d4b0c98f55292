// A CAR file read with bounded memory: one pass over the framing only (block heads read by offset, block bodies
// skipped) builds the index; then each block is read once by offset and checked against its CID when it is used, so
// a verify reads and hashes every byte once. On a failure the blocks are scanned in file order and the first bad one
// is named, as if every block had been checked first.
import { createHash } from 'node:crypto';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { createDecoder } from '@ipld/car/decoder';
import type { CID } from 'multiformats/cid';
import { AppError } from '../../platform/errors.js';
import { cidOf } from './car-io.js';

const SHA2_256 = 0x12;
/** Framing reads: block heads are a few dozen bytes, so one small window serves several of them. */
const HEAD_WINDOW = 4096;

interface Entry {
  cid: CID;
  offset: number;
  length: number;
  index: number;
  checked: boolean;
}

function problem(cid: CID, bytes: Uint8Array, index: number, file: string): AppError | undefined {
  if (cid.multihash.code !== SHA2_256)
    return new AppError(
      'integrity_failed',
      `block ${index} (${cid}) of ${file} uses an unsupported hash 0x${cid.multihash.code.toString(16)}`,
    );
  if (!createHash('sha256').update(bytes).digest().equals(cid.multihash.digest))
    return new AppError(
      'integrity_failed',
      `bad block ${cid} (block ${index} of ${file}): its bytes hash to ${cidOf(bytes)}`,
      { block: cid.toString(), index },
    );
  return undefined;
}

/** The BytesReader @ipld/car's decoder reads from, over positional reads: seek() skips a block body unread. */
function headReader(fh: FileHandle, size: number) {
  let pos = 0;
  let win = Buffer.alloc(0);
  let winAt = 0;
  const fill = async (length: number) => {
    if (pos >= winAt && pos + length <= winAt + win.length) return;
    const want = Math.max(0, Math.min(Math.max(length, HEAD_WINDOW), size - pos));
    const b = Buffer.allocUnsafe(want);
    const { bytesRead } = want > 0 ? await fh.read(b, 0, want, pos) : { bytesRead: 0 };
    win = b.subarray(0, bytesRead);
    winAt = pos;
  };
  const view = (length: number) => win.subarray(pos - winAt, pos - winAt + length);
  return {
    async upTo(length: number) {
      await fill(length);
      return view(Math.max(0, Math.min(length, winAt + win.length - pos)));
    },
    async exactly(length: number, seek = false) {
      await fill(length);
      if (winAt + win.length - pos < length) throw new Error('Unexpected end of data');
      const out = view(length);
      if (seek) pos += length;
      return out;
    },
    seek(length: number) {
      pos += length;
    },
    get pos() {
      return pos;
    },
  };
}

export class CarFile {
  private scratch = Buffer.alloc(0);
  /** Runs once the file is closed (a fetched copy removes itself). */
  onClose?: () => Promise<void>;

  private constructor(
    readonly path: string,
    readonly root: CID,
    private readonly fh: FileHandle,
    /** In file order. */
    private readonly entries: Entry[],
    private readonly index: Map<string, Entry>,
    readonly totalBytes: number,
  ) {}

  get blockCount(): number {
    return this.entries.length;
  }

  /** Indexes the blocks (framing only: ~100 B a block held); nothing is hashed yet. */
  static async open(path: string): Promise<CarFile> {
    const size = (await stat(path)).size;
    const fh = await open(path, 'r');
    try {
      const decoder = createDecoder(headReader(fh, size));
      let roots: CID[];
      try {
        roots = (await decoder.header()).roots;
      } catch (err) {
        throw new AppError('integrity_failed', `not a readable CAR file: ${(err as Error).message}`);
      }
      if (roots.length !== 1)
        throw new AppError('integrity_failed', `expected one root, found ${roots.length}`);
      const entries: Entry[] = [];
      const index = new Map<string, Entry>();
      try {
        for await (const b of decoder.blocksIndex()) {
          if (b.blockOffset + b.blockLength > size)
            throw new Error(`block ${entries.length} runs past the end of the file (truncated)`);
          const e = {
            cid: b.cid,
            offset: b.blockOffset,
            length: b.blockLength,
            index: entries.length,
            checked: false,
          };
          entries.push(e);
          index.set(b.cid.toString(), e);
        }
      } catch (err) {
        throw new AppError(
          'integrity_failed',
          `CAR framing broken after block ${entries.length}: ${(err as Error).message}`,
          { index: entries.length },
        );
      }
      return new CarFile(path, roots[0]!, fh, entries, index, size);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  private async read(e: Entry, into?: Buffer): Promise<Buffer> {
    const buf = into ?? Buffer.allocUnsafe(e.length);
    const { bytesRead } = await this.fh.read(buf, 0, e.length, e.offset);
    if (bytesRead !== e.length)
      throw new AppError('integrity_failed', `${this.path} was truncated while read`);
    return buf.subarray(0, e.length);
  }

  private async load(cid: CID, transient: boolean): Promise<Uint8Array | undefined> {
    const e = this.index.get(cid.toString());
    if (!e) return undefined;
    if (transient && this.scratch.length < e.length) this.scratch = Buffer.allocUnsafe(e.length);
    const bytes = await this.read(e, transient ? this.scratch : undefined);
    const bad = problem(e.cid, bytes, e.index, this.path);
    if (bad) throw (await this.firstBadBlock()) ?? bad;
    e.checked = true;
    return bytes;
  }

  /** The block's bytes (checked against its CID), or undefined when the file has no such block. */
  get(cid: CID): Promise<Uint8Array | undefined> {
    return this.load(cid, false);
  }

  /** Like get(), into one reused buffer: valid until the next transient read (chunks are read this way). */
  getTransient(cid: CID): Promise<Uint8Array | undefined> {
    return this.load(cid, true);
  }

  /** Checks every block not read yet (no link reaches it), in file order. */
  async checkRest(): Promise<void> {
    for (const e of this.entries) {
      if (e.checked) continue;
      if (this.scratch.length < e.length) this.scratch = Buffer.allocUnsafe(e.length);
      const bad = problem(e.cid, await this.read(e, this.scratch), e.index, this.path);
      if (bad) throw bad;
      e.checked = true;
    }
  }

  /** The first block in file order whose bytes do not match its CID, as the error to report; undefined if none. */
  async firstBadBlock(): Promise<AppError | undefined> {
    const buf = Buffer.allocUnsafe(this.entries.reduce((m, e) => Math.max(m, e.length), 0));
    for (const e of this.entries) {
      const bad = problem(e.cid, await this.read(e, buf), e.index, this.path);
      if (bad) return bad;
    }
    return undefined;
  }

  async close(): Promise<void> {
    try {
      await this.fh.close();
    } finally {
      const done = this.onClose;
      this.onClose = undefined;
      await done?.();
    }
  }
}
