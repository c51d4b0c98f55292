// The directory cold-storage target on the real filesystem: hashes, atomic visibility, confinement, removal.
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirectoryTarget } from './index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rty-cold-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('DirectoryTarget', () => {
  it('writes a stream, returns its SHA-256 and size, and reads it back', async () => {
    const t = new DirectoryTarget(dir);
    const parts = [Buffer.from('a'.repeat(70_000)), Buffer.from('b'.repeat(10))];
    const w = await t.write('ns/run/part-0.bin', Readable.from(parts));
    const all = Buffer.concat(parts);
    expect(w).toEqual({ sha256: createHash('sha256').update(all).digest('hex'), bytes: all.length });
    expect(await readFile(join(dir, 'ns/run/part-0.bin'))).toEqual(all);
    const back: Buffer[] = [];
    for await (const c of t.read('ns/run/part-0.bin')) back.push(c as Buffer);
    expect(Buffer.concat(back)).toEqual(all);
    expect(await readdir(join(dir, 'ns/run'))).toEqual(['part-0.bin']);
  });

  it('leaves no file under the final name when the source fails mid-way', async () => {
    const t = new DirectoryTarget(dir);
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
    const t = new DirectoryTarget(dir);
    await expect(t.write('../escape.bin', Readable.from([Buffer.from('x')]))).rejects.toMatchObject({
      code: 'invalid_request',
    });
    expect(() => t.read('a/../../etc/passwd')).toThrow(/bad export path/);
  });
});
