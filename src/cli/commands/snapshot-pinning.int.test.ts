// Issue 18, pinning by CID: a consistent forgery stored under the recorded CID, a CAR replaced by random bytes before
// prune, a missing predecessor, a made-up proof, an unpinned file: each refused with its exit code (3 tampered,
// 4 missing, 2 usage) and nothing marked verified, proved, pruned or written.
import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as dagCbor from '@ipld/dag-cbor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { CREDIT, createNamespaces } from '../../../test/factories.js';
import { insertJobs, insertTopups } from '../../../test/archive-factories.js';
import { createScratchDatabase, tempArchiveDir } from '../../../test/archive-harness.js';
import { forgeCar } from '../../../test/forge.js';
import { chunkLeafHash } from '../../modules/snapshots/index.js';
import { buildProgram } from '../program.js';

let db: PgTestSchema;
let archive: { dir: string; remove(): Promise<void> };
let namespaceIds: string[];
const cids: string[] = [];

async function rty(...args: string[]): Promise<{ code: number; out: string[] }> {
  const out: string[] = [];
  let code = 0;
  const program = buildProgram(
    { config: { ...db.config, ARCHIVE_DIR: archive.dir }, log: testLog, out: (l) => out.push(l) },
    (c) => (code = c),
  );
  await program.parseAsync(['node', 'rty', ...args]);
  return { code, out };
}
const car = (cid: string) => join(archive.dir, `${cid}.car`);
const verifiedAt = async (cid: string) =>
  (await db.pool.query('select verified_at from snapshots where cid = $1', [cid])).rows[0]?.verified_at as
    | Date
    | undefined;

beforeAll(async () => {
  db = await createPgTestSchema();
  archive = await tempArchiveDir();
  namespaceIds = (await createNamespaces(db.pool, 3)).map((n) => n.id);
  const from = new Date('2026-01-03T00:00:00Z');
  const to = new Date('2026-03-01T00:00:00Z');
  await insertJobs(db.pool, { count: 1500, from, to, namespaceIds });
  await insertTopups(db.pool, { count: 400, from, to, namespaceIds, tag: 'pin' });
  expect((await rty('rollup', 'run', '--through', '2026-02-28')).code).toBe(0);
  for (let i = 0; i < 2; i += 1) {
    const r = await rty('snapshot', 'create');
    expect(r.code).toBe(0);
    cids.push(/^snapshot \d+ (\S+):/.exec(r.out.at(-1)!)![1]!);
  }
});
afterAll(async () => {
  await db.drop();
  await archive.remove();
});

/** The second snapshot with one balance set to 999,000 credits, every hash recomputed. */
async function forgedBalance(): Promise<{ bytes: Uint8Array; cid: string }> {
  return forgeCar(await readFile(car(cids[1]!)), {
    rows: {
      section: 'credit_balances',
      edit: (rows) =>
        rows.map((r) => (r[0] === namespaceIds[0] ? [r[0], 999_000n * CREDIT, ...r.slice(2)] : r)),
    },
  });
}

describe('pinning by CID', () => {
  it('verify <cid> and prove <cid> refuse a consistent forgery stored as <cid>.car; the record is not re-verified', async () => {
    const good = await readFile(car(cids[1]!));
    const forged = await forgedBalance();
    const before = await verifiedAt(cids[1]!);
    await writeFile(car(cids[1]!), forged.bytes);
    try {
      const v = await rty('snapshot', 'verify', cids[1]!);
      expect(v.code).toBe(3);
      expect(v.out.at(-1)).toMatch(
        new RegExp(`^TAMPERED: the file's root is ${forged.cid}, not the pinned snapshot ${cids[1]}`),
      );
      expect(await verifiedAt(cids[1]!)).toEqual(before);
      const p = await rty('snapshot', 'prove', cids[1]!, '--namespace', namespaceIds[0]!);
      expect(p.code).toBe(3);
      expect(p.out.join('\n')).not.toMatch(/999000/);
      // The same file under its own name is a different snapshot: verify by file pins to the name too.
      const other = join(archive.dir, 'copy.car');
      await writeFile(other, forged.bytes);
      expect((await rty('snapshot', 'verify', other, '--cid', cids[1]!)).code).toBe(3);
      expect((await rty('snapshot', 'verify', other)).code).toBe(2);
    } finally {
      await writeFile(car(cids[1]!), good);
    }
    expect((await rty('snapshot', 'verify', cids[1]!)).code).toBe(0);
    expect((await rty('snapshot', 'verify', car(cids[1]!))).code).toBe(0);
  });

  it('a forged balance is caught by deep verification even when the forger pins the new CID', async () => {
    const forged = await forgedBalance();
    const file = join(archive.dir, `${forged.cid}.car`);
    await writeFile(file, forged.bytes);
    const v = await rty('snapshot', 'verify', file, '--cid', forged.cid);
    expect(v.code).toBe(3);
    expect(v.out.at(-1)).toMatch(
      new RegExp(`balance of namespace ${namespaceIds[0]}: available 999000000000, its entries give`),
    );
  });

  it('roots <cid> prints every section root; verify-proof needs --cid or --root and never trusts the proof', async () => {
    const roots = await rty('snapshot', 'roots', cids[1]!);
    expect(roots.code).toBe(0);
    const balancesRoot = roots.out.find((l) => l.startsWith('credit_balances\t'))!.split('\t')[2]!;
    expect(balancesRoot).toMatch(/^[0-9a-f]{64}$/);
    const proof = JSON.parse(
      (await rty('snapshot', 'prove', cids[1]!, '--namespace', namespaceIds[1]!)).out.join('\n'),
    );
    const file = join(archive.dir, 'proof.json');
    await writeFile(file, JSON.stringify(proof));
    expect((await rty('snapshot', 'verify-proof', file)).code).toBe(2);
    expect((await rty('snapshot', 'verify-proof', file, '--cid', cids[1]!)).out).toEqual([
      `proof OK against section credit_balances of snapshot ${cids[1]} (root ${balancesRoot})`,
    ]);
    // A made-up one-chunk proof of any balance: its own root is its chunk's hash, so it "proves" itself.
    const block = dagCbor.encode([[namespaceIds[1], 999_000n * CREDIT, 0n, 0n, 0n]]);
    const madeUp = {
      ...proof,
      chunk: 0,
      chunks: 1,
      row: 0,
      path: [],
      block: Buffer.from(block).toString('base64'),
      record: [namespaceIds[1], Number(999_000n * CREDIT), 0, 0, 0],
      root: chunkLeafHash(block).toString('hex'),
    };
    await writeFile(file, JSON.stringify(madeUp));
    expect((await rty('snapshot', 'verify-proof', file, '--root', madeUp.root)).code).toBe(0);
    const r = await rty('snapshot', 'verify-proof', file, '--cid', cids[1]!);
    expect(r).toEqual({ code: 3, out: ['proof INVALID: the chunk and path do not lead to the root'] });
  });

  it('a consistent forgery named <its cid>.car is not pinned by its name: verify and restore need --cid (exit 2)', async () => {
    const forged = await forgeCar(await readFile(car(cids[1]!)), {
      manifest: (m) => {
        m.createdAt = '2020-01-01T00:00:00.000Z';
      },
    });
    const file = join(archive.dir, `${forged.cid}.car`);
    await writeFile(file, forged.bytes);
    const target = await createScratchDatabase();
    try {
      const v = await rty('snapshot', 'verify', file);
      expect(v.code).toBe(2);
      expect(v.out.at(-1)).toMatch(/give the snapshot's CID with --cid <cid>.*signed by the network key/);
      expect((await rty('snapshot', 'roots', file)).code).toBe(2);
      expect((await rty('snapshot', 'restore', file, '--database', target.url)).code).toBe(2);
      const t = await target.pool.query(
        `select count(*)::int as n from pg_tables where tablename = 'ledger_entries'`,
      );
      expect(t.rows[0].n).toBe(0);
      // A checkpointed snapshot's file is still trusted by its name.
      expect((await rty('snapshot', 'verify', car(cids[1]!))).code).toBe(0);
    } finally {
      await target.drop();
      await rm(file, { force: true });
    }
  });

  it('restore refuses a file whose root is not the pinned CID and writes nothing', async () => {
    const target = await createScratchDatabase();
    try {
      const forged = await forgedBalance();
      const file = join(archive.dir, 'restore-me.car');
      await writeFile(file, forged.bytes);
      expect((await rty('snapshot', 'restore', file, '--database', target.url)).code).toBe(2);
      const r = await rty('snapshot', 'restore', file, '--database', target.url, '--cid', cids[1]!);
      expect(r.code).toBe(3);
      const t = await target.pool.query(
        `select count(*)::int as n from pg_tables where tablename = 'ledger_entries'`,
      );
      expect(t.rows[0].n).toBe(0);
    } finally {
      await target.drop();
    }
  });

  it('prune trusts the signed checkpoint log, not PostgreSQL: a row pointed at a consistent forgery keeps every partition', async () => {
    const forged = await forgeCar(await readFile(car(cids[1]!)), {
      manifest: (m) => {
        m.createdAt = '2026-03-01T00:00:01.000Z';
      },
    });
    await writeFile(car(forged.cid), forged.bytes);
    const repoint = async (from: string, to: string) => {
      const c = await db.pool.connect();
      try {
        await c.query('begin');
        await c.query('set local session_replication_role = replica');
        await c.query('update snapshots set cid = $2 where cid = $1', [from, to]);
        await c.query('commit');
      } finally {
        c.release();
      }
    };
    await repoint(cids[1]!, forged.cid);
    try {
      expect((await rty('snapshot', 'verify', forged.cid)).code).toBe(0);
      const r = await rty('rollup', 'prune');
      expect(r.code).toBe(3);
      expect(r.out.filter((l) => l.startsWith('pruned'))).toEqual([]);
      expect(r.out).toContainEqual(
        `kept jobs_202601: snapshot ${forged.cid} is not in the signed checkpoint log`,
      );
    } finally {
      await repoint(forged.cid, cids[1]!);
      await rm(car(forged.cid), { force: true });
    }
  });

  it('prune re-reads the archived CAR: 10 random bytes in its place keep every partition, saying why', async () => {
    const good = await readFile(car(cids[1]!));
    await writeFile(car(cids[1]!), Buffer.from('0123456789'));
    try {
      const r = await rty('rollup', 'prune');
      expect(r.code).toBe(3);
      expect(r.out.filter((l) => l.startsWith('pruned'))).toEqual([]);
      expect(r.out).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^kept jobs_202601: snapshot ${cids[1]} does not verify against its pinned CID: not a readable CAR`,
          ),
        ),
      );
      const n = await db.pool.query(`select count(*)::int as n from jobs where created_at < '2026-02-01'`);
      expect(n.rows[0].n).toBeGreaterThan(0);
    } finally {
      await writeFile(car(cids[1]!), good);
    }
    const r = await rty('rollup', 'prune');
    expect(r.out.filter((l) => l.startsWith('pruned')).length).toBe(2);
  });

  it('a missing predecessor is a failure (exit 4), and create then records nothing and leaves no CAR', async () => {
    await rename(car(cids[0]!), `${car(cids[0]!)}.away`);
    try {
      const v = await rty('snapshot', 'verify', cids[1]!);
      expect(v.code).toBe(4);
      expect(v.out.at(-1)).toMatch(new RegExp(`^MISSING: .*predecessor ${cids[0]}, which is missing`));
    } finally {
      await rename(`${car(cids[0]!)}.away`, car(cids[0]!));
    }
    // The newest snapshot's CAR is gone: the next one cannot check its link, so it is not recorded as verified.
    await rename(car(cids[1]!), `${car(cids[1]!)}.away`);
    try {
      const before = (await readdir(archive.dir)).filter((n) => n.endsWith('.car')).sort();
      const c = await rty('snapshot', 'create');
      expect(c.code).toBe(4);
      expect(c.out.at(-1)).toMatch(new RegExp(`^MISSING: .*predecessor ${cids[1]}, which is missing`));
      expect((await readdir(archive.dir)).filter((n) => n.endsWith('.car')).sort()).toEqual(before);
      const n = await db.pool.query('select count(*)::int as n from snapshots');
      expect(n.rows[0].n).toBe(2);
    } finally {
      await rename(`${car(cids[1]!)}.away`, car(cids[1]!));
    }
    expect((await rty('snapshot', 'verify', cids[1]!)).code).toBe(0);
  });
});
