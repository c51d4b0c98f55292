// The directory cold store on the real filesystem. Files (record exports): hashes and CID, atomic visibility,
// confinement, removal. CARs (snapshots): put/get/exists, rename of local scratch, stale sweep.
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempArchiveDir } from '../../../test/archive-harness.js';
import { DirectoryStore, fileCid } from './index.js';

let dir: string;
let archive: { dir: string; remove(): Promise<void> };
let outside: { dir: string; remove(): Promise<void> };
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rty-cold-'));
  archive = await tempArchiveDir();
  outside = await tempArchiveDir();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await archive.remove();
  await outside.remove();
});

describe('DirectoryStore: files', () => {
  it('writes a stream, returns its SHA-256, size and CID, and reads it back', async () => {
    const t = new DirectoryStore(dir);
    const parts = [Buffer.from('a'.repeat(70_000)), Buffer.from('b'.repeat(10))];
    const w = await t.write('ns/run/part-0.bin', Readable.from(parts));
    const all = Buffer.concat(parts);
    expect(w).toEqual({
      sha256: createHash('sha256').update(all).digest('hex'),
      bytes: all.length,
      cid: fileCid(all),
    });
    expect(await readFile(join(dir, 'ns/run/part-0.bin'))).toEqual(all);
    const back: Buffer[] = [];
    for await (const c of t.read('ns/run/part-0.bin')) back.push(c as Buffer);
    expect(Buffer.concat(back)).toEqual(all);
    expect(await readdir(join(dir, 'ns/run'))).toEqual(['part-0.bin']);
  });

  it('leaves no file under the final name when the source fails mid-way', async () => {
    const t = new DirectoryStore(dir);
    async function* failing() {
      yield Buffer.from('partial');
      throw new Error('source died');
    }
    await expect(t.write('ns/run2/part-0.bin', Readable.from(failing()))).rejects.toThrow(/source died/);
    expect((await readdir(join(dir, 'ns/run2'))).filter((f) => !f.endsWith('.partial'))).toEqual([]);
    await t.removePrefix('ns/run2');
    await expect(readdir(join(dir, 'ns/run2'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses names that leave its directory', async () => {
    const t = new DirectoryStore(dir);
    await expect(t.write('../escape.bin', Readable.from([Buffer.from('x')]))).rejects.toMatchObject({
      code: 'invalid_request',
    });
    expect(() => t.read('a/../../etc/passwd')).toThrow(/bad export path/);
  });
});

describe('DirectoryStore: CARs', () => {
  it('stores a file from elsewhere (copy) and a scratch file in place (rename); get and exists find them', async () => {
    const t = new DirectoryStore(archive.dir);
    const src = join(outside.dir, 'a.bin');
    await writeFile(src, Buffer.from('hello'));
    expect(await t.put('k1.car', src)).toEqual({ location: join(archive.dir, 'k1.car'), sizeBytes: 5 });
    const scratch = join(await t.scratchDir(), '.snapshot-abc.car.partial');
    await writeFile(scratch, Buffer.from('world!'));
    expect((await t.put('k2.car', scratch)).sizeBytes).toBe(6);
    expect(Buffer.from((await t.get('k2.car'))!).toString()).toBe('world!');
    expect(await t.exists('k1.car')).toBe(true);
    expect(await t.exists('nope.car')).toBe(false);
    expect(await t.get('nope.car')).toBeUndefined();
    expect(await t.openLocal('nope.car')).toBeUndefined();
    // The stored file itself: releasing it removes nothing.
    const local = (await t.openLocal('k1.car'))!;
    expect(local.path).toBe(join(archive.dir, 'k1.car'));
    await local.release();
    expect(await t.exists('k1.car')).toBe(true);
    await expect(t.put('../escape', src)).rejects.toThrow(/bad archive key/);
    expect((await readdir(archive.dir)).sort()).toEqual(['k1.car', 'k2.car']);
  });

  it('sweeps only old scratch files', async () => {
    const t = new DirectoryStore(archive.dir);
    const old = join(archive.dir, '.snapshot-0011.car.partial');
    const fresh = join(archive.dir, '.freeze-0022.car.partial');
    await writeFile(old, 'x');
    await writeFile(fresh, 'y');
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    await utimes(old, twoHoursAgo, twoHoursAgo);
    expect(await t.sweepScratch(3_600_000)).toBe(1);
    expect((await readdir(archive.dir)).sort()).toEqual(['.freeze-0022.car.partial', 'k1.car', 'k2.car']);
  });
});
