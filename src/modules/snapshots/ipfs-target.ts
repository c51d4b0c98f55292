// The IPFS archive target: a snapshot CAR is imported into a Kubo node with its root pinned (`dag/import`), and
// refused unless the root Kubo reports is the CID we built; it is read back by CID (`dag/export`) into a local copy
// that the caller verifies pinned to that CID (every block hashed, the root equal) before anything in it is used.
import { createReadStream, createWriteStream } from 'node:fs';
import { CarBlockIterator } from '@ipld/car/iterator';
import { mkdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { AppError } from '../../platform/errors.js';
import type { KuboClient } from '../../stores/ipfs/kubo-client.js';
import { DirectoryTarget, type ArchiveTarget } from './archive-target.js';

const carKeyPattern = /^([A-Za-z0-9]+)\.car$/;

function cidOfKey(key: string): string {
  const m = carKeyPattern.exec(key);
  if (!m)
    throw new AppError('invalid_request', `bad archive key ${key}: the IPFS target stores <cid>.car only`);
  return m[1]!;
}

export class IpfsTarget implements ArchiveTarget {
  readonly description: string;
  private readonly scratch: DirectoryTarget;
  private readonly dir: string;

  /** `dir` holds scratch CARs before import and the copies fetched back from the node (never the archive itself). */
  constructor(
    private readonly kubo: KuboClient,
    dir: string,
  ) {
    this.description = kubo.description;
    this.dir = resolve(dir);
    this.scratch = new DirectoryTarget(this.dir);
  }

  async put(key: string, localPath: string): Promise<{ location: string; sizeBytes: number }> {
    const cid = cidOfKey(key);
    // Refused before anything reaches the node when the file's own header names another root.
    const header = (await CarBlockIterator.fromIterable(createReadStream(localPath))).getRoots();
    const named = (await header).map((r) => r.toString());
    if (named.length !== 1 || named[0] !== cid)
      throw new AppError('integrity_failed', `CAR root ${named.join(', ') || 'none'} is not ${cid}: refused`);
    const roots = await this.kubo.importCar(localPath);
    const reported = roots.map((r) => r.cid);
    if (reported.length !== 1 || reported[0] !== cid) {
      // What Kubo pinned is not the snapshot we built: leave none of it pinned.
      for (const other of reported) if (other !== cid) await this.kubo.unpin(other).catch(() => undefined);
      throw new AppError(
        'integrity_failed',
        `IPFS imported root ${reported.join(', ') || 'none'}, but the snapshot's CID is ${cid}: refused`,
      );
    }
    if (roots[0]!.pinError)
      throw new AppError('store_unavailable', `IPFS did not pin ${cid}: ${roots[0]!.pinError}`);
    return { location: `ipfs://${cid}`, sizeBytes: (await stat(localPath)).size };
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const path = await this.localPath(key);
    if (!path) return undefined;
    try {
      return await readFile(path);
    } finally {
      await unlink(path).catch(() => undefined);
    }
  }

  exists(key: string): Promise<boolean> {
    return this.kubo.isPinned(cidOfKey(key));
  }

  async remove(key: string): Promise<void> {
    await this.kubo.unpin(cidOfKey(key));
  }

  /**
   * Fetches the pinned DAG by CID into a fresh local CAR (the node's block order, not necessarily ours) and returns
   * its path; undefined when the node does not hold it pinned. The caller verifies it pinned to the CID.
   */
  async localPath(key: string): Promise<string | undefined> {
    const cid = cidOfKey(key);
    if (!(await this.kubo.isPinned(cid))) return undefined;
    const dir = join(this.dir, '.fetched');
    await mkdir(dir, { recursive: true });
    const final = join(dir, key);
    const tmp = join(dir, `.${key}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await pipeline(await this.kubo.exportCar(cid), createWriteStream(tmp));
      await rename(tmp, final);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    return final;
  }

  scratchDir(): Promise<string> {
    return this.scratch.scratchDir();
  }

  sweepScratch(olderThanMs: number): Promise<number> {
    return this.scratch.sweepScratch(olderThanMs);
  }
}
