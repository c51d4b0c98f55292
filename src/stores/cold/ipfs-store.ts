// The IPFS cold store (COLD_STORAGE=ipfs): everything is imported into a Kubo node as a CAR with its root pinned, and
// refused unless the root Kubo reports is the CID we computed.
// - A snapshot CAR is read back by CID (`dag/export`); the caller verifies it pinned to that CID before using it.
// - A record export file is imported as its file DAG (file-dag.ts) and read back block by block (`block/get`), each
//   block checked against its CID as it streams; a local pointer `<name>.cid` lets a crashed run's files be unpinned.
// The local directory holds scratch CARs, pointers and fetched copies (removed once released), never the data itself.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash, randomBytes } from 'node:crypto';
import { CarBlockIterator } from '@ipld/car/iterator';
import { CarWriter } from '@ipld/car/writer';
import * as dagCbor from '@ipld/dag-cbor';
import { CID } from 'multiformats/cid';
import * as Digest from 'multiformats/hashes/digest';
import { AppError } from '../../platform/errors.js';
import type { KuboClient } from '../ipfs/kubo-client.js';
import type { ColdStore, LocalCopy, StoredFile } from './cold-store.js';
import { DirectoryStore } from './directory-store.js';
import { FileDagBuilder, checkBlock, parseCid, parseFileRoot } from './file-dag.js';

const carKeyPattern = /^([A-Za-z0-9]+)\.car$/;
const FETCHED = '.fetched';

function cidOfKey(key: string): string {
  const m = carKeyPattern.exec(key);
  if (!m)
    throw new AppError('invalid_request', `bad archive key ${key}: the IPFS store keeps <cid>.car only`);
  return m[1]!;
}

export class IpfsStore implements ColdStore {
  readonly description: string;
  private readonly local: DirectoryStore;
  private readonly dir: string;

  constructor(
    private readonly kubo: KuboClient,
    dir: string,
  ) {
    this.description = kubo.description;
    this.dir = resolve(dir);
    this.local = new DirectoryStore(this.dir);
  }

  /** Imports a CAR whose root must be `cid`; nothing else stays pinned when Kubo reports another root. */
  private async importPinned(localPath: string, cid: string, what: string): Promise<void> {
    const roots = await this.kubo.importCar(localPath);
    const reported = roots.map((r) => r.cid);
    if (reported.length !== 1 || reported[0] !== cid) {
      for (const other of reported) if (other !== cid) await this.kubo.unpin(other).catch(() => undefined);
      throw new AppError(
        'integrity_failed',
        `IPFS imported root ${reported.join(', ') || 'none'}, but the ${what}'s CID is ${cid}: refused`,
      );
    }
    if (roots[0]!.pinError)
      throw new AppError('store_unavailable', `IPFS did not pin ${cid}: ${roots[0]!.pinError}`);
  }

  async write(name: string, data: Readable): Promise<StoredFile> {
    const scratch = join(await this.scratchDir(), `.export-${randomBytes(6).toString('hex')}.car.partial`);
    try {
      // The root is known only at the end: a placeholder of the same codec and hash keeps the header's length.
      const placeholder = CID.createV1(dagCbor.code, Digest.create(0x12, new Uint8Array(32)));
      const { writer, out } = CarWriter.create([placeholder]);
      const written = pipeline(Readable.from(out), createWriteStream(scratch));
      const dag = new FileDagBuilder();
      try {
        for await (const chunk of data) for (const b of dag.update(chunk as Buffer)) await writer.put(b);
        const { leaves, root, sha256, bytes } = dag.finish();
        for (const b of [...leaves, root]) await writer.put(b);
        await writer.close();
        await written;
        const fh = await open(scratch, 'r+');
        try {
          await CarWriter.updateRootsInFile(fh, [root.cid]);
        } finally {
          await fh.close();
        }
        const cid = root.cid.toString();
        await this.importPinned(scratch, cid, `export file ${name}`);
        await this.local.write(`${name}.cid`, Readable.from([Buffer.from(cid)]));
        return { sha256, bytes, cid };
      } catch (err) {
        await writer.close().catch(() => undefined);
        await written.catch(() => undefined);
        throw err;
      }
    } finally {
      await unlink(scratch).catch(() => undefined);
    }
  }

  read(name: string, cid?: string): Readable {
    const pointer = cid ? undefined : this.local.read(`${name}.cid`);
    return Readable.from(this.readBlocks(name, cid, pointer));
  }

  /** Root then leaves, each checked against its CID; the size and SHA-256 the root names are checked at the end. */
  private async *readBlocks(name: string, given?: string, pointer?: Readable): AsyncGenerator<Buffer> {
    let text = given;
    if (!text) {
      const parts: Buffer[] = [];
      for await (const c of pointer!) parts.push(c as Buffer);
      text = Buffer.concat(parts).toString();
    }
    const cid = parseCid(text);
    const missing = (what: string) =>
      new AppError('not_found', `${name}: ${what} of ${cid} is not in ${this.description}`);
    const rootBytes = await this.kubo.getBlock(cid.toString());
    if (!rootBytes) throw missing('the root block');
    const root = parseFileRoot(cid, rootBytes);
    const hash = createHash('sha256');
    let total = 0;
    for (const [i, c] of root.chunks.entries()) {
      const bytes = await this.kubo.getBlock(c.toString());
      if (!bytes) throw missing(`chunk ${i}`);
      checkBlock(c, bytes, `${name} chunk ${i}`);
      hash.update(bytes);
      total += bytes.length;
      yield Buffer.from(bytes);
    }
    if (total !== root.bytes || !hash.digest().equals(Buffer.from(root.sha256)))
      throw new AppError('integrity_failed', `${name}: the chunks of ${cid} do not add up to its root`);
  }

  /** Unpins every file a crashed run imported under `prefix` (named by its pointer), then drops the pointers. */
  async removePrefix(prefix: string): Promise<void> {
    const base = join(this.dir, prefix);
    const entries = await readdir(base, { recursive: true }).catch(() => [] as string[]);
    for (const e of entries.filter((n) => n.endsWith('.cid'))) {
      const cid = (await readFile(join(base, e), 'utf8').catch(() => '')).trim();
      if (cid) await this.kubo.unpin(cid);
    }
    await this.local.removePrefix(relative(this.dir, base));
  }

  async put(key: string, localPath: string): Promise<{ location: string; sizeBytes: number }> {
    const cid = cidOfKey(key);
    // Refused before anything reaches the node when the file's own header names another root.
    const named = (await (await CarBlockIterator.fromIterable(createReadStream(localPath))).getRoots()).map(
      (r) => r.toString(),
    );
    if (named.length !== 1 || named[0] !== cid)
      throw new AppError('integrity_failed', `CAR root ${named.join(', ') || 'none'} is not ${cid}: refused`);
    await this.importPinned(localPath, cid, 'snapshot');
    return { location: this.locate(key), sizeBytes: (await stat(localPath)).size };
  }

  /** The pinned DAG as a CAR in memory (the node's block order, not necessarily ours), or undefined. */
  async get(key: string): Promise<Uint8Array | undefined> {
    const cid = cidOfKey(key);
    if (!(await this.kubo.isPinned(cid))) return undefined;
    const parts: Buffer[] = [];
    for await (const c of await this.kubo.exportCar(cid)) parts.push(c as Buffer);
    return Buffer.concat(parts);
  }

  exists(key: string): Promise<boolean> {
    return this.kubo.isPinned(cidOfKey(key));
  }

  async remove(key: string): Promise<void> {
    await this.kubo.unpin(cidOfKey(key));
  }

  locate(key: string): string {
    return `ipfs://${cidOfKey(key)}`;
  }

  /**
   * Fetches the pinned DAG by CID into a fresh local CAR of this caller's own; `release` removes it. Undefined when
   * the node does not hold it pinned. The caller verifies it pinned to the CID.
   */
  async openLocal(key: string): Promise<LocalCopy | undefined> {
    const cid = cidOfKey(key);
    if (!(await this.kubo.isPinned(cid))) return undefined;
    const dir = join(this.dir, FETCHED);
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${randomBytes(6).toString('hex')}-${key}`);
    const release = () => unlink(path).catch(() => undefined);
    try {
      await pipeline(await this.kubo.exportCar(cid), createWriteStream(path));
    } catch (err) {
      await release();
      throw err;
    }
    return { path, release };
  }

  scratchDir(): Promise<string> {
    return this.local.scratchDir();
  }

  /** Stale scratch CARs, and fetched copies a killed process never released. */
  async sweepScratch(olderThanMs: number): Promise<number> {
    let removed = await this.local.sweepScratch(olderThanMs);
    const dir = join(this.dir, FETCHED);
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const st = await stat(join(dir, name)).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > olderThanMs) {
        await rm(join(dir, name), { force: true });
        removed += 1;
      }
    }
    return removed;
  }
}
