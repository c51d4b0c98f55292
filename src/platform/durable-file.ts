// Crash-safe publication of a file: its bytes are synced, it is renamed into place, and the directory entry is
// synced too (a rename is durable only once the directory is), so after a crash the file is either absent or
// complete under its final name. Shared by the cold-storage targets of records exports and snapshots.
import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Syncs `tmp`, renames it to `final`, then syncs `final`'s directory. */
export async function publishDurably(tmp: string, final: string): Promise<void> {
  await fsyncPath(tmp);
  await rename(tmp, final);
  await fsyncPath(dirname(final));
}
