// The checkpoint log outside the database: one signed checkpoint per line in `checkpoints.jsonl` of the archive
// directory, mirrored to witness directories (each append is fsynced; a witness that diverges is refused).
import { mkdir, open, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AppError } from '../../platform/errors.js';
import { checkpointHash, parseCheckpointLine, type SignedCheckpoint } from './checkpoint.js';

export const CHECKPOINT_LOG = 'checkpoints.jsonl';

export async function readCheckpointLog(dir: string): Promise<SignedCheckpoint[]> {
  let text: string;
  try {
    text = await readFile(join(dir, CHECKPOINT_LOG), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l, i) => parseCheckpointLine(l, i));
}

async function appendLines(dir: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  await mkdir(dir, { recursive: true });
  const fh = await open(join(dir, CHECKPOINT_LOG), 'a');
  try {
    await fh.write(lines.map((l) => `${l}\n`).join(''));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class CheckpointLog {
  readonly dir: string;
  readonly witnesses: string[];

  constructor(dir: string, witnesses: string[] = []) {
    this.dir = resolve(dir);
    this.witnesses = witnesses.map((w) => resolve(w)).filter((w) => w !== this.dir);
  }

  read(): Promise<SignedCheckpoint[]> {
    return readCheckpointLog(this.dir);
  }

  /**
   * Appends to the archive's log (the publish point: once this line is fsynced the checkpoint is out), then brings
   * every witness up to date. A witness only ever gains lines; one whose lines differ from the archive's is not
   * overwritten (that is the rewrite it exists to expose). Witness mirroring never fails the append: a witness that
   * cannot be written (or diverges) is reported back, and the next append catches it up from the archive's log.
   */
  async append(s: SignedCheckpoint): Promise<{ witnessErrors: Array<{ dir: string; error: string }> }> {
    await appendLines(this.dir, [JSON.stringify(s)]);
    const witnessErrors: Array<{ dir: string; error: string }> = [];
    const all = await this.read();
    for (const w of this.witnesses) {
      try {
        await mirror(w, all);
      } catch (err) {
        witnessErrors.push({ dir: w, error: (err as Error).message });
      }
    }
    return { witnessErrors };
  }
}

async function mirror(w: string, all: SignedCheckpoint[]): Promise<void> {
  const seen = await readCheckpointLog(w);
  for (const [i, c] of seen.entries())
    if (i >= all.length || checkpointHash(c.checkpoint) !== checkpointHash(all[i]!.checkpoint))
      throw new AppError(
        'chain_broken',
        `witness ${w} holds checkpoint ${i + 1} that differs from the archive's; not mirrored`,
      );
  await appendLines(
    w,
    all.slice(seen.length).map((c) => JSON.stringify(c)),
  );
}
