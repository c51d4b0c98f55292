// The default cold store: a directory. A file or CAR is visible under its final name only once completely written
// and synced (its directory entry too), so after a crash it is either absent or complete.
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, normalize, resolve, sep } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { publishDurably } from '../../platform/durable-file.js';
import { AppError } from '../../platform/errors.js';
import type { ColdStore, LocalCopy, StoredFile } from './cold-store.js';
import { FileDagBuilder } from './file-dag.js';

/** Scratch files of snapshot/freeze CARs and of IPFS export CARs (swept when a killed process left them). */
const scratchPattern = /^\.(snapshot|freeze|export)-[0-9a-f]+\.car\.partial$/;
/** CAR keys are flat file names (`<cid>.car`); export names are relative paths below the root. */
const keyPattern = /^[A-Za-z0-9._-]+$/;

/** A pass-through that feeds every chunk to a file DAG builder (size, SHA-256 and CID in one pass). */
export function hashingStream(dag: FileDagBuilder): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      dag.update(chunk);
      done(null, chunk);
    },
  });
}

export class DirectoryStore implements ColdStore {
  readonly description: string;
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
    this.description = `dir:${this.dir}`;
  }

  private pathOf(name: string): string {
    const p = normalize(join(this.dir, name));
    if (!p.startsWith(this.dir + sep)) throw new AppError('invalid_request', `bad export path ${name}`);
    return p;
  }

  private keyPath(key: string): string {
    if (!keyPattern.test(key) || key === '.' || key === '..')
      throw new AppError('invalid_request', `bad archive key ${key}`);
    return join(this.dir, key);
  }

  async write(name: string, data: Readable): Promise<StoredFile> {
    const path = this.pathOf(name);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.partial`;
    const dag = new FileDagBuilder();
    await pipeline(data, hashingStream(dag), createWriteStream(tmp));
    await publishDurably(tmp, path);
    const { sha256, bytes, root } = dag.finish();
    return { sha256, bytes, cid: root.cid.toString() };
  }

  /** The file as stored; the caller checks it against its recorded SHA-256 and CID (the directory cannot). */
  read(name: string): Readable {
    return createReadStream(this.pathOf(name));
  }

  async removePrefix(prefix: string): Promise<void> {
    await rm(this.pathOf(prefix), { recursive: true, force: true });
  }

  async put(key: string, localPath: string): Promise<{ location: string; sizeBytes: number }> {
    const final = this.keyPath(key);
    await mkdir(this.dir, { recursive: true });
    // A scratch file already in this directory is renamed into place; anything else is copied first.
    const local = resolve(localPath);
    const tmp = dirname(local) === this.dir ? local : join(this.dir, `.${key}.${process.pid}.tmp`);
    if (tmp !== local) await copyFile(local, tmp);
    await publishDurably(tmp, final);
    return { location: final, sizeBytes: (await stat(final)).size };
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      return await readFile(this.keyPath(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async exists(key: string): Promise<boolean> {
    return stat(this.keyPath(key)).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  locate(key: string): string {
    return this.keyPath(key);
  }

  /** The stored file itself (nothing to release), or undefined when the key is absent. */
  async openLocal(key: string): Promise<LocalCopy | undefined> {
    return (await this.exists(key))
      ? { path: this.keyPath(key), release: () => Promise.resolve() }
      : undefined;
  }

  async remove(key: string): Promise<void> {
    await unlink(this.keyPath(key)).catch(() => undefined);
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
}
