// Opens a snapshot CAR for reading: every block checked against its CID before its bytes are used; the manifest, sections and their
// rows are reached by link, and a missing block is named.
import * as dagCbor from '@ipld/dag-cbor';
import { CID } from 'multiformats/cid';
import { AppError } from '../../platform/errors.js';
import { CborFormatError, splitArray } from './cbor-items.js';
import { readVerifiedCar, type VerifiedCar } from './car-io.js';
import { CarFile } from './car-file.js';
import { parseManifest, parseSectionBlock, type Manifest, type SectionBlock } from './manifest.js';

/** Where a snapshot's blocks come from: a CAR held in memory, or a CAR file read by offset (bounded memory). */
export interface BlockSource {
  readonly root: CID;
  readonly totalBytes: number;
  readonly blockCount: number;
  get(cid: CID): Promise<Uint8Array | undefined>;
  /** Bytes valid only until the next transient read (a file source reuses one buffer); defaults to get(). */
  getTransient?(cid: CID): Promise<Uint8Array | undefined>;
  /** Checks the blocks no read reached yet (a file source checks lazily). */
  checkRest?(): Promise<void>;
  /** On a failure: the first block in file order that does not match its CID, if any. */
  firstBadBlock?(): Promise<Error | undefined>;
}

function memorySource(car: VerifiedCar): BlockSource {
  return {
    root: car.root,
    totalBytes: car.totalBytes,
    blockCount: car.blocks.size,
    get: async (cid) => car.blocks.get(cid.toString()),
  };
}

export class SnapshotReader {
  private constructor(
    readonly car: BlockSource,
    readonly manifest: Manifest,
  ) {}

  /**
   * `expectedCid` pins the file: a file whose root is another CID is refused before anything else is trusted (a
   * consistent forgery has valid block hashes; only the pinned root tells it from the snapshot that was recorded).
   */
  static async open(bytes: Uint8Array, expectedCid?: string): Promise<SnapshotReader> {
    return SnapshotReader.fromSource(memorySource(await readVerifiedCar(bytes)), expectedCid);
  }

  /** A CAR file read with bounded memory (streaming verify); `onClose` runs when the reader closes (or fails to open). */
  static async openFile(
    path: string,
    expectedCid?: string,
    onClose?: () => Promise<void>,
  ): Promise<SnapshotReader> {
    const car = await CarFile.open(path).catch(async (err: unknown) => {
      await onClose?.();
      throw err;
    });
    let reader: SnapshotReader;
    try {
      reader = await SnapshotReader.fromSource(car, expectedCid);
    } catch (err) {
      // A file that is not the pinned one is refused as such, whatever it holds.
      if (err instanceof AppError && err.details?.expected !== undefined) {
        await onClose?.();
        throw err;
      }
      // Blocks are checked when read: a bad block earlier in the file is the failure to name (fromSource closed it;
      // the file is released only after this second look).
      const bad = await CarFile.open(path)
        .then(async (c) => {
          try {
            return await c.firstBadBlock();
          } finally {
            await c.close();
          }
        })
        .finally(() => onClose?.());
      throw bad ?? err;
    }
    car.onClose = onClose;
    return reader;
  }

  static async fromSource(car: BlockSource, expectedCid?: string): Promise<SnapshotReader> {
    const reader = new SnapshotReader(car, undefined as unknown as Manifest);
    try {
      if (expectedCid !== undefined && car.root.toString() !== expectedCid)
        throw new AppError(
          'integrity_failed',
          `the file's root is ${car.root}, not the pinned snapshot ${expectedCid}: refused`,
          { expected: expectedCid, actual: car.root.toString() },
        );
      const manifest = parseManifest(await reader.block(car.root, 'the manifest'));
      return new SnapshotReader(car, manifest);
    } catch (err) {
      await reader.close();
      throw err;
    }
  }

  static parseCid(text: string): CID {
    try {
      return CID.parse(text);
    } catch {
      throw new AppError('invalid_request', `not a CID: ${text}`);
    }
  }

  get cid(): string {
    return this.car.root.toString();
  }

  async close(): Promise<void> {
    await (this.car as { close?: () => Promise<void> }).close?.();
  }

  async block(cid: CID, what: string): Promise<Uint8Array> {
    const b = await this.car.get(cid);
    if (!b)
      throw new AppError('integrity_failed', `missing block ${cid} (${what})`, { block: cid.toString() });
    return b;
  }

  sectionNames(): string[] {
    return Object.keys(this.manifest.sections);
  }

  async section(name: string): Promise<SectionBlock> {
    const cid = this.manifest.sections[name];
    if (!cid) throw new AppError('not_found', `the snapshot has no section ${name}`);
    return parseSectionBlock(await this.block(cid, `section block of ${name}`), name);
  }

  /**
   * The bytes of chunk `i` of a section, checked against its CID; `transient` bytes are valid only until the next
   * transient read (a streaming verify reads millions of rows through one buffer).
   */
  async chunkBytes(section: SectionBlock, i: number, transient = false): Promise<Uint8Array> {
    const cid = section.chunks[i]!;
    const b = transient && this.car.getTransient ? await this.car.getTransient(cid) : await this.car.get(cid);
    if (!b)
      throw new AppError('integrity_failed', `missing block ${cid} (chunk ${i} of section ${section.name})`, {
        block: cid.toString(),
      });
    return b;
  }

  /** The encoded rows of chunk `i` of a section (not decoded). */
  async chunkItems(section: SectionBlock, i: number): Promise<Uint8Array[]> {
    const cid = section.chunks[i]!;
    const bytes = await this.block(cid, `chunk ${i} of section ${section.name}`);
    try {
      return splitArray(bytes);
    } catch (err) {
      if (err instanceof CborFormatError)
        throw new AppError(
          'integrity_failed',
          `chunk ${cid} of section ${section.name} is not a CBOR array: ${err.message}`,
        );
      throw err;
    }
  }

  /** Every row of a section, decoded, in order. */
  async *rows(name: string): AsyncIterable<unknown[]> {
    const s = await this.section(name);
    for (let i = 0; i < s.chunks.length; i += 1) {
      const rows = dagCbor.decode(
        await this.block(s.chunks[i]!, `chunk ${i} of section ${name}`),
      ) as unknown[][];
      yield* rows;
    }
  }
}
