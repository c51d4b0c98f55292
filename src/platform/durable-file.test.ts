// publishDurably: the file appears under its final name only complete, the temp name is gone, and a missing
// temp file or directory is an error (never a silent success).
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishDurably } from './durable-file.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rty-durable-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('publishDurably', () => {
  it('moves a complete temp file into place and leaves nothing else', async () => {
    await writeFile(join(dir, 'a.partial'), 'all the bytes');
    await publishDurably(join(dir, 'a.partial'), join(dir, 'a'));
    expect(await readFile(join(dir, 'a'), 'utf8')).toBe('all the bytes');
    expect(await readdir(dir)).toEqual(['a']);
  });

  it('rejects when the temp file or the target directory is missing', async () => {
    await expect(publishDurably(join(dir, 'missing.partial'), join(dir, 'b'))).rejects.toThrow(/ENOENT/);
    await writeFile(join(dir, 'c.partial'), 'x');
    await expect(publishDurably(join(dir, 'c.partial'), join(dir, 'no-such-dir', 'c'))).rejects.toThrow(
      /ENOENT/,
    );
    expect((await readdir(dir)).sort()).toEqual(['a', 'c.partial']);
  });
});
