// Snapshots against the real PostgreSQL and a temp archive directory: create → CAR → verify; a flipped byte, a
// missing block and a broken chain are each named; crashes mid-snapshot leave no record; proofs check against roots.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as dagCbor from '@ipld/dag-cbor';
import type { CID } from 'multiformats/cid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { insertJobs, insertRegistry, insertTopups } from '../../../test/archive-factories.js';
import { indexCar, tempArchiveDir, withoutBlock } from '../../../test/archive-harness.js';
import { AuditService } from '../audit/index.js';
import { RollupsService } from '../rollups/index.js';
import {
  SnapshotsService,
  checkProof,
  snapshotSections,
  verifySnapshot,
  type CreateResult,
} from './index.js';
import { DirectoryStore, carKey } from '../../stores/cold/index.js';

let db: PgTestSchema;
let archive: { dir: string; remove(): Promise<void> };
let snapshots: SnapshotsService;
let audit: AuditService;
let namespaceIds: string[];
const now = new Date('2026-04-15T12:00:00Z');
let first: CreateResult;
let second: CreateResult;

beforeAll(async () => {
  db = await createPgTestSchema();
  archive = await tempArchiveDir();
  const ns = await createNamespaces(db.pool, 4);
  namespaceIds = ns.map((n) => n.id);
  await insertRegistry(db.pool, ns[0]!.accountId);
  const from = new Date('2026-02-20T00:00:00Z');
  const to = new Date('2026-03-10T00:00:00Z');
  await insertJobs(db.pool, { count: 3000, from, to, namespaceIds });
  await insertTopups(db.pool, { count: 5000, from, to, namespaceIds, tag: 's' });
  audit = new AuditService({ pool: db.pool, log: testLog });
  for (let i = 0; i < 5; i += 1)
    await audit.append({ actor: 'admin', action: 'config.set', target: `k${i}`, body: { i } });
  const clock = { now: () => now };
  await new RollupsService({
    pool: db.pool,
    log: testLog,
    clock,
    options: { detailWindowDays: 7, maxDaysPerTransaction: 31 },
    audit,
  }).rollUp();
  snapshots = new SnapshotsService({
    pool: db.pool,
    log: testLog,
    clock,
    audit,
    target: new DirectoryStore(archive.dir),
    // Small blocks so that sections span many chunks.
    limits: { rows: 500, bytes: 64 * 1024 },
  });
});
afterAll(async () => {
  await db.drop();
  await archive.remove();
});

const carPath = (cid: string) => join(archive.dir, carKey(cid));
const count = async (table: string) =>
  Number((await db.pool.query(`select count(*)::int as n from ${table}`)).rows[0].n);

describe('snapshot create and verify', () => {
  it('a crash while reading or after archiving leaves no record; the re-run creates seq 1', async () => {
    await expect(
      snapshots.create({
        onProgress: (p) => {
          if (p.stage === 'read' && p.detail === 'ledger_entries') throw new Error('crash while reading');
        },
      }),
    ).rejects.toThrow('crash while reading');
    await expect(
      snapshots.create({
        onProgress: (p) => {
          if (p.stage === 'archived') throw new Error('crash after archiving');
        },
      }),
    ).rejects.toThrow('crash after archiving');
    expect(await count('snapshots')).toBe(0);
    first = await snapshots.create();
    expect(first.record).toMatchObject({
      seq: 1,
      prevCid: null,
      rollupFrom: '2026-02-20',
      rollupTo: '2026-04-07',
    });
    expect(first.record.verifiedAt).toBeInstanceOf(Date);
    expect(await count('snapshots')).toBe(1);
  });

  it('carries every table with its row count and verifies offline with every period and the audit chain', async () => {
    const counts = Object.fromEntries(first.sections.map((s) => [s.name, s.count]));
    for (const spec of snapshotSections) {
      // The audit entry recording the snapshot itself came after it.
      const expected = spec.name === 'audit_log' ? (await count('audit_log')) - 1 : await count(spec.name);
      expect(counts[spec.name], spec.name).toBe(expected);
    }
    expect(counts.ledger_entries).toBe(5000);
    const report = await verifySnapshot(await readFile(carPath(first.record.cid)));
    expect(report).toMatchObject({ cid: first.record.cid, seq: 1, chain: 'first', periods: 47 });
    expect(report.auditEntries).toBe(5 + 0);
  });

  it('flipping one byte inside a data block fails naming that block', async () => {
    const bytes = await readFile(carPath(first.record.cid));
    const blocks = await indexCar(bytes);
    const victim = blocks[7]!;
    const tampered = Buffer.from(bytes);
    tampered[victim.blockOffset + Math.floor(victim.blockLength / 2)]! ^= 0x01;
    await expect(verifySnapshot(tampered)).rejects.toMatchObject({
      code: 'integrity_failed',
      message: expect.stringContaining(`bad block ${victim.cid}`),
    });
  });

  it('a missing block fails naming it', async () => {
    const bytes = await readFile(carPath(first.record.cid));
    const blocks = await indexCar(bytes);
    const victim = blocks[3]!;
    await expect(verifySnapshot(await withoutBlock(bytes, victim.cid))).rejects.toMatchObject({
      code: 'integrity_failed',
      message: expect.stringContaining(`missing block ${victim.cid}`),
    });
  });

  it('a re-hashed edit (every CID valid, one row dropped) fails on the section Merkle root', async () => {
    const bytes = await readFile(carPath(first.record.cid));
    const { CarReader, CarBufferWriter } = await import('@ipld/car');
    const reader = await CarReader.fromBytes(bytes);
    const [root] = await reader.getRoots();
    const manifest = dagCbor.decode((await reader.get(root!))!.bytes) as { sections: Record<string, CID> };
    const sectionCid = manifest.sections.credit_balances!;
    const section = dagCbor.decode((await reader.get(sectionCid))!.bytes) as { chunks: CID[]; count: number };
    const chunk = dagCbor.decode((await reader.get(section.chunks[0]!))!.bytes) as unknown[];
    const newChunk = dagCbor.encode(chunk.slice(1));
    const { cidOf } = await import('./car-io.js');
    const newChunkCid = cidOf(newChunk);
    section.chunks[0] = newChunkCid;
    section.count -= 1;
    const newSection = dagCbor.encode(section);
    manifest.sections.credit_balances = cidOf(newSection);
    const newManifest = dagCbor.encode(manifest);
    const newRoot = cidOf(newManifest);
    const out = CarBufferWriter.createWriter(new ArrayBuffer(bytes.length * 2), { roots: [newRoot] });
    for await (const b of reader.blocks()) out.write(b);
    out.write({ cid: newChunkCid, bytes: newChunk });
    out.write({ cid: manifest.sections.credit_balances!, bytes: newSection });
    out.write({ cid: newRoot, bytes: newManifest });
    await expect(verifySnapshot(out.close({ resize: true }))).rejects.toMatchObject({
      code: 'integrity_failed',
      message: expect.stringContaining('section credit_balances: Merkle root'),
    });
  });

  it('the second snapshot names the first; a predecessor that does not match is a chain error', async () => {
    await audit.append({ actor: 'admin', action: 'node.pause', target: '0x01' });
    second = await snapshots.create();
    expect(second.record).toMatchObject({ seq: 2, prevCid: first.record.cid });
    expect((await snapshots.verifyStored(second.record.cid)).chain).toBe('checked');

    const good = await readFile(carPath(first.record.cid));
    // Someone replaced the predecessor's file with another snapshot.
    await writeFile(carPath(first.record.cid), await readFile(carPath(second.record.cid)));
    await expect(snapshots.verifyStored(second.record.cid)).rejects.toMatchObject({
      code: 'chain_broken',
      message: expect.stringContaining(`names predecessor ${first.record.cid}`),
    });
    await writeFile(carPath(first.record.cid), good);
    // Verifying against an explicitly given predecessor that is not the one named.
    const secondBytes = await readFile(carPath(second.record.cid));
    await expect(
      verifySnapshot(secondBytes, { loadPrevious: async () => secondBytes }),
    ).rejects.toMatchObject({
      code: 'chain_broken',
    });
    expect((await verifySnapshot(secondBytes, { loadPrevious: async () => good })).chain).toBe('checked');
  });

  it('an inclusion proof of a balance validates, and fails for a changed value or another root', async () => {
    const proof = await snapshots.prove(second.record.cid, { namespaceId: namespaceIds[2]! });
    const bal = (
      await db.pool.query('select available::text as a from credit_balances where namespace_id = $1', [
        namespaceIds[2],
      ])
    ).rows[0].a as string;
    expect(proof.record[0]).toBe(namespaceIds[2]);
    expect(String(proof.record[1])).toBe(bal);
    const pinnedRoot = (await snapshots.openVerified(second.record.cid)).report.roots.credit_balances!;
    expect(proof.root).toBe(pinnedRoot);
    expect(checkProof(proof, pinnedRoot)).toEqual({ ok: true });
    const changed = { ...proof, record: [proof.record[0], '999999999', ...proof.record.slice(2)] };
    expect(checkProof(changed, pinnedRoot).ok).toBe(false);
    // The chunk (the Merkle leaf) with the balance changed in place: it no longer hashes up to the pinned root.
    const rows = dagCbor.decode(new Uint8Array(Buffer.from(proof.block, 'base64'))) as unknown[][];
    rows[proof.row]![1] = 999_999_999n;
    const forged = {
      ...proof,
      block: Buffer.from(dagCbor.encode(rows)).toString('base64'),
      record: [...proof.record.slice(0, 1), '999999999', ...proof.record.slice(2)],
    };
    expect(checkProof(forged, pinnedRoot)).toEqual({
      ok: false,
      reason: 'the chunk and path do not lead to the root',
    });
    // A version 1 proof (a single-row leaf) is refused by its version, not misread.
    expect(checkProof({ ...proof, version: 1 }, pinnedRoot)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('proof format version 1 is not supported') as unknown,
    });
    const otherRoot = Buffer.from(
      (await snapshots.prove(second.record.cid, { rollupKey: ['2026-03-01'] })).root,
      'hex',
    ).toString('hex');
    expect(checkProof(proof, otherRoot).ok).toBe(false);
  });

  it('an inclusion proof of a rollup row validates against the rollup root', async () => {
    const proof = await snapshots.prove(second.record.cid, { rollupKey: ['2026-03-01', namespaceIds[1]!] });
    expect(proof.section).toBe('job_rollups');
    expect(proof.record.slice(0, 2)).toEqual(['2026-03-01', namespaceIds[1]]);
    const root = (await snapshots.openVerified(second.record.cid)).report.roots.job_rollups!;
    expect(checkProof(proof, root)).toEqual({ ok: true });
  });

  it('the record of an archived snapshot is found as cover for its rolled-up days only', async () => {
    expect(await snapshots.coverForPrune('2026-03-01', '2026-04-01')).toMatchObject({
      cid: second.record.cid,
      days: 31,
    });
    expect(await snapshots.coverForPrune('2026-04-01', '2026-05-01')).toEqual({
      reason: 'not inside an archived, verified snapshot',
    });
    expect((await snapshots.latestAuditAnchor())?.seq).toBe(second.record.auditSeq);
  });
});
