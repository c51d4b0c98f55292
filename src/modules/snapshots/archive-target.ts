// Cold-storage targets for CAR files: the interface (object stores and IPFS implement it as adapters) and the
// default, a directory, written crash-safely (temp file, fsync, rename).
import { copyFile, mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { publishDurably } from '../../platform/durable-file.js';

export interface ArchiveTarget {
  /** Human-readable description for logs and the snapshot record, e.g. `dir:/var/archive`. */
  readonly description: string;
  /** Stores the local file under `key`; returns where it is and its size. Idempotent for the same key and bytes. */
  put(key: string, localPath: string): Promise<{ location: string; sizeBytes: number }>;
  /** The stored bytes, or undefined when the key is absent. */
  get(key: string): Promise<Uint8Array | undefined>;
  exists(key: string): Promise<boolean>;
  /** Deletes a stored key (a snapshot that failed its read-back verify must not stay behind unrecorded). */
  remove(key: string): Promise<void>;
  /** A local file holding the key, when the target has one (lets verification stream instead of loading it). */
  localPath?(key: string): Promise<string | undefined>;
  /** A local path to scratch files before `put` (the target's own disk when it has one). */
  scratchDir(): Promise<string>;
  /** Removes scratch files a killed process left behind (older than `olderThanMs`); returns how many. */
  sweepScratch(olderThanMs: number): Promise<number>;
}

const scratchPattern = /^\.(snapshot|freeze)-[0-9a-f]+\.car\.partial$/;

const keyPattern = /^[A-Za-z0-9._-]+$/;

export class DirectoryTarget implements ArchiveTarget {
  readonly description: string;
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
    this.description = `dir:${this.dir}`;
  }

  async put(key: string, localPath: string): Promise<{ location: string; sizeBytes: number }> {
    if (!keyPattern.test(key)) throw new Error(`bad archive key ${key}`);
    await mkdir(this.dir, { recursive: true });
    const final = join(this.dir, key);
    // A scratch file already in this directory is renamed into place; anything else is copied first.
    const local = resolve(localPath);
    const tmp = dirname(local) === this.dir ? local : join(this.dir, `.${key}.${process.pid}.tmp`);
    if (tmp !== local) await copyFile(local, tmp);
    await publishDurably(tmp, final);
    return { location: final, sizeBytes: (await stat(final)).size };
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    if (!keyPattern.test(key)) throw new Error(`bad archive key ${key}`);
    try {
      return await readFile(join(this.dir, key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async exists(key: string): Promise<boolean> {
    if (!keyPattern.test(key)) throw new Error(`bad archive key ${key}`);
    return stat(join(this.dir, key)).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  async scratchDir(): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    return this.dir;
  }

  async sweepScratch(olderThanMs: number): Promise<number> {
    let removed = 0;
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const name of names.filter((n) => scratchPattern.test(n))) {
      const path = join(this.dir, name);
      const st = await stat(path).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > olderThanMs) {
        await unlink(path).catch(() => undefined);
        removed += 1;
      }
    }
    return removed;
  }

  /** The stored file's path (streaming readers open it), or undefined when the key is absent. */
  async localPath(key: string): Promise<string | undefined> {
    return (await this.exists(key)) ? join(this.dir, key) : undefined;
  }

  async remove(key: string): Promise<void> {
    await unlink(join(this.dir, key)).catch(() => undefined);
  }
}

export const carKey = (cid: string): string => `${cid}.car`;
