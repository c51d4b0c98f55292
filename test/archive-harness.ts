// Archive test helpers: a temporary archive directory, a throwaway database, and byte-level CAR surgery.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CarIndexer } from '@ipld/car/indexer';
import { CarBufferWriter } from '@ipld/car';
import type { CID } from 'multiformats/cid';
import { createPgPool, type Pool } from '../src/stores/postgres/pool.js';
import { baseConfig, uniqueName } from './harness.js';

export async function tempArchiveDir(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'rty-archive-'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A new, empty database on the shared server (a fork target); drop() removes it. */
export async function createScratchDatabase(): Promise<{ url: string; pool: Pool; drop(): Promise<void> }> {
  const name = uniqueName('rty_restore');
  const admin = createPgPool({ url: baseConfig.POSTGRES_URL, size: 1, schema: 'public' });
  await admin.query(`create database ${name}`);
  const url = new URL(baseConfig.POSTGRES_URL);
  url.pathname = `/${name}`;
  const pool = createPgPool({
    url: url.toString(),
    size: 4,
    schema: 'public',
    applicationName: `test-${name}`,
  });
  return {
    url: url.toString(),
    pool,
    drop: async () => {
      await pool.end();
      await admin.query(`drop database ${name} with (force)`);
      await admin.end();
    },
  };
}

export interface BlockLocation {
  cid: string;
  blockOffset: number;
  blockLength: number;
}

export async function indexCar(bytes: Uint8Array): Promise<BlockLocation[]> {
  const out: BlockLocation[] = [];
  for await (const b of await CarIndexer.fromBytes(bytes))
    out.push({ cid: b.cid.toString(), blockOffset: b.blockOffset, blockLength: b.blockLength });
  return out;
}

/** A copy of the CAR with one block left out (same root, every other block intact). */
export async function withoutBlock(bytes: Uint8Array, dropCid: string): Promise<Uint8Array> {
  const { CarReader } = await import('@ipld/car');
  const reader = await CarReader.fromBytes(bytes);
  const roots = await reader.getRoots();
  const kept: Array<{ cid: CID; bytes: Uint8Array }> = [];
  let size = 0;
  for await (const b of reader.blocks()) {
    if (b.cid.toString() === dropCid) continue;
    kept.push(b);
    size += b.bytes.length + 100;
  }
  const buffer = new ArrayBuffer(size + 1024);
  const writer = CarBufferWriter.createWriter(buffer, { roots });
  for (const b of kept) writer.write(b);
  return writer.close({ resize: true });
}
