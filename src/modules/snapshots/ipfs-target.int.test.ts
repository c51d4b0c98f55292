// The IPFS archive target against a real Kubo node of this file's own: snapshots imported as CAR with the root pinned,
// fetched back by CID, verified after retrieval, restored from the fetched copy; a CAR whose root is not the CID it
// is stored as, and tampered fetched bytes, are refused.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { insertRegistry, insertTopups } from '../../../test/archive-factories.js';
import { createScratchDatabase, indexCar, tempArchiveDir } from '../../../test/archive-harness.js';
import { startOwnKubo } from '../../../test/ipfs-harness.js';
import type { KuboNode } from '../../../scripts/kubo-node.js';
import { KuboClient } from '../../stores/ipfs/kubo-client.js';
import { AuditService } from '../audit/index.js';
import { restoreSnapshot, selectSql, snapshotSections, SnapshotsService } from './index.js';
import { IpfsStore, carKey } from '../../stores/cold/index.js';

let db: PgTestSchema;
let node: KuboNode;
let kubo: KuboClient;
let scratch: { dir: string; remove(): Promise<void> };
let snapshots: SnapshotsService;
let target: IpfsStore;
const cids: string[] = [];

const service = (dir: string) =>
  new SnapshotsService({
    pool: db.pool,
    log: testLog,
    clock: { now: () => new Date('2026-04-15T00:00:00Z') },
    audit: new AuditService({ pool: db.pool, log: testLog }),
    target: new IpfsStore(kubo, dir),
    limits: { rows: 100, bytes: 16 * 1024 },
  });

beforeAll(async () => {
  [db, node, scratch] = await Promise.all([createPgTestSchema(), startOwnKubo(), tempArchiveDir()]);
  kubo = new KuboClient(node.apiUrl);
  const ns = await createNamespaces(db.pool, 4);
  await insertRegistry(db.pool, ns[0]!.accountId);
  const from = new Date('2026-03-01T00:00:00Z');
  const to = new Date('2026-03-20T00:00:00Z');
  await insertTopups(db.pool, { count: 600, from, to, namespaceIds: ns.map((n) => n.id), tag: 'ipfs' });
  snapshots = service(scratch.dir);
  target = new IpfsStore(kubo, scratch.dir);
  for (let i = 0; i < 2; i++) cids.push((await snapshots.create()).record.cid);
}, 300_000);

afterAll(async () => {
  await node?.stop({ removeRepo: true });
  await db?.drop();
  await scratch?.remove();
});

describe('IPFS archive target (Kubo)', () => {
  it('imports each snapshot with its root pinned and records where it is', async () => {
    const list = await snapshots.list();
    expect(list.map((r) => r.location).sort()).toEqual(cids.map((c) => `ipfs://${c}`).sort());
    for (const cid of cids) {
      expect(await kubo.isPinned(cid)).toBe(true);
      expect(await target.exists(carKey(cid))).toBe(true);
    }
    expect(list.find((r) => r.cid === cids[1])?.prevCid).toBe(cids[0]);
  });

  it('fetches by CID from the node, verifies the fetched copy (and its predecessor) and restores from it', async () => {
    // A fresh service with an empty scratch directory: everything it reads comes from the node.
    const fresh = await tempArchiveDir();
    const restoreDb = await createScratchDatabase();
    try {
      const reader = service(fresh.dir);
      const report = await reader.verifyStored(cids[1]!);
      expect(report.cid).toBe(cids[1]);
      expect(report.prev).toBe(cids[0]);
      // Every copy fetched to verify (the snapshot and its predecessor) was removed once read.
      expect(await readdir(join(fresh.dir, '.fetched'))).toEqual([]);
      // Restored from the first snapshot as fetched (no predecessor to look up; both hold the same rows).
      const fetched = await reader.fetch(cids[0]!);
      const restored = await restoreSnapshot(
        fetched,
        { pool: restoreDb.pool, schema: 'public', log: testLog },
        { expectedCid: cids[0]! },
      );
      expect(restored.rows.find((r) => r.name === 'ledger_entries')?.count).toBe(600);
      for (const table of ['credit_balances', 'namespaces', 'ledger_entries']) {
        const spec = snapshotSections.find((s) => s.name === table)!;
        const a = (await db.pool.query(selectSql(spec))).rows;
        const b = (await restoreDb.pool.query(selectSql(spec))).rows;
        expect(b, table).toEqual(a);
      }
    } finally {
      await restoreDb.drop();
      await fresh.remove();
    }
  });

  it('refuses tampered fetched bytes (verify and restore), naming the integrity failure', async () => {
    const fetched = Buffer.from(await snapshots.fetch(cids[0]!));
    const blocks = await indexCar(fetched);
    const b = blocks[Math.floor(blocks.length / 2)]!;
    fetched[b.blockOffset + 2]! ^= 0x01;
    await expect(snapshots.verifyBytes(fetched, cids[0]!)).rejects.toMatchObject({
      code: 'integrity_failed',
    });
    const restoreDb = await createScratchDatabase();
    try {
      await expect(
        restoreSnapshot(
          fetched,
          { pool: restoreDb.pool, schema: 'public', log: testLog },
          { expectedCid: cids[0]! },
        ),
      ).rejects.toMatchObject({ code: 'integrity_failed' });
    } finally {
      await restoreDb.drop();
    }
  });

  it('refuses a CAR whose root is not the CID it is stored as, and leaves nothing pinned', async () => {
    const other = join(scratch.dir, 'other.car');
    await writeFile(other, await snapshots.fetch(cids[0]!));
    const claimed = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy';
    await expect(target.put(carKey(claimed), other)).rejects.toMatchObject({ code: 'integrity_failed' });
    expect(await kubo.isPinned(claimed)).toBe(false);
    // cids[0] stays pinned: it was pinned before this import and is still the archived snapshot.
    expect(await kubo.isPinned(cids[0]!)).toBe(true);
  });

  it('a CID the node does not hold is absent, not an error', async () => {
    const missing = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy';
    expect(await target.exists(carKey(missing))).toBe(false);
    expect(await target.get(carKey(missing))).toBeUndefined();
    await expect(snapshots.fetch(missing)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('the fetched CAR keeps the pinned root in its header, and is removed once released', async () => {
    const local = (await target.openLocal(carKey(cids[0]!)))!;
    const bytes = await readFile(local.path);
    const { CarReader } = await import('@ipld/car');
    const roots = await (await CarReader.fromBytes(bytes)).getRoots();
    expect(roots.map((r) => r.toString())).toEqual([cids[0]]);
    await local.release();
    await expect(stat(local.path)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
