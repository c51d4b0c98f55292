// The checkpoint log outside the database: one signed checkpoint per line in `checkpoints.jsonl` of the archive
// directory, mirrored to witness directories (each append is fsynced; a witness that diverges is refused).
import { mkdir, open, readFile, truncate } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AppError } from '../../platform/errors.js';
import { checkpointHash, parseCheckpointLine, type SignedCheckpoint } from './checkpoint.js';

export const CHECKPOINT_LOG = 'checkpoints.jsonl';

/** A final line without its newline: an append that crashed mid-write (never published: the fsync did not finish). */
export type TornLineFn = (detail: { file: string; bytes: number }) => void;

export async function readCheckpointLog(dir: string, onTorn?: TornLineFn): Promise<SignedCheckpoint[]> {
  const file = join(dir, CHECKPOINT_LOG);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const lines = text.split('\n');
  // Every complete line ends with \n, so the last element is '' unless the last append was torn; that fragment is
  // skipped (and cut off by the next append), any malformed complete line is still tampering.
  const torn = lines.pop()!;
  if (torn.length > 0) onTorn?.({ file, bytes: Buffer.byteLength(torn) });
  return lines.filter((l) => l.length > 0).map((l, i) => parseCheckpointLine(l, i));
}

/** Cuts a torn final line (see readCheckpointLog) so that the next line starts on a line of its own. */
async function dropTornTail(file: string): Promise<void> {
  let text: Buffer;
  try {
    text = await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (text.length === 0 || text[text.length - 1] === 0x0a) return;
  await truncate(file, text.lastIndexOf(0x0a) + 1);
}

async function appendLines(dir: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  await mkdir(dir, { recursive: true });
  const file = join(dir, CHECKPOINT_LOG);
  await dropTornTail(file);
  const fh = await open(file, 'a');
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

  constructor(
    dir: string,
    witnesses: string[] = [],
    private readonly onTorn?: TornLineFn,
  ) {
    this.dir = resolve(dir);
    this.witnesses = witnesses.map((w) => resolve(w)).filter((w) => w !== this.dir);
  }

  read(): Promise<SignedCheckpoint[]> {
    return readCheckpointLog(this.dir, this.onTorn);
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
