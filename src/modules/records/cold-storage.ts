// Cold storage targets for retention exports: an interface (object stores or IPFS can implement it) and the
// default directory target, which makes a file visible only once it is completely written and synced (its
// directory entry too).
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { publishDurably } from '../../platform/durable-file.js';
import { AppError } from '../../platform/errors.js';

export interface WrittenFile {
  sha256: string;
  bytes: number;
}

export interface ColdStorageTarget {
  /** Shown in receipts, e.g. `dir:/var/archive/records`. */
  readonly description: string;
  /** Writes `name` from the stream; the file exists only once complete. Returns its SHA-256 and size. */
  write(name: string, data: Readable): Promise<WrittenFile>;
  read(name: string): Readable;
  /** Removes everything under `prefix` (the partial export of a run that crashed before it was verified). */
  removePrefix(prefix: string): Promise<void>;
}

export class DirectoryTarget implements ColdStorageTarget {
  readonly description: string;

  constructor(private readonly root: string) {
    this.description = `dir:${root}`;
  }

  private pathOf(name: string): string {
    const p = normalize(join(this.root, name));
    if (!p.startsWith(normalize(this.root) + sep))
      throw new AppError('invalid_request', `bad export path ${name}`);
    return p;
  }

  async write(name: string, data: Readable): Promise<WrittenFile> {
    const path = this.pathOf(name);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.partial`;
    const hash = createHash('sha256');
    let bytes = 0;
    data.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    await pipeline(data, createWriteStream(tmp));
    await publishDurably(tmp, path);
    return { sha256: hash.digest('hex'), bytes };
  }

  read(name: string): Readable {
    return createReadStream(this.pathOf(name));
  }

  async removePrefix(prefix: string): Promise<void> {
    await rm(this.pathOf(prefix), { recursive: true, force: true });
  }
}
