// The directory archive target on a real temp directory: put/get/exists, rename of local scratch, stale sweep.
import { readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempArchiveDir } from '../../../test/archive-harness.js';
import { DirectoryTarget } from './index.js';

let archive: { dir: string; remove(): Promise<void> };
let outside: { dir: string; remove(): Promise<void> };

beforeAll(async () => {
  archive = await tempArchiveDir();
  outside = await tempArchiveDir();
});
afterAll(async () => {
  await archive.remove();
  await outside.remove();
});

describe('DirectoryTarget', () => {
  it('stores a file from elsewhere (copy) and a scratch file in place (rename); get and exists find them', async () => {
    const t = new DirectoryTarget(archive.dir);
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
    await expect(t.put('../escape', src)).rejects.toThrow(/bad archive key/);
    expect((await readdir(archive.dir)).sort()).toEqual(['k1.car', 'k2.car']);
  });

  it('sweeps only old scratch files', async () => {
    const t = new DirectoryTarget(archive.dir);
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
