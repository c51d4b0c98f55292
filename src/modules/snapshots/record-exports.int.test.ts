// A deleted document stays provable (issue 18 item 6): documents past retention are exported (content-addressed,
// pinned on Kubo for the IPFS store) and deleted, the next snapshot lists the exports since its predecessor with
// their CIDs, an inclusion proof shows one is referenced, and the export read back by CID verifies against it.
// Real PostgreSQL, FerretDB and (for the IPFS store) a Kubo node of this file's own.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { BSON } from 'mongodb';
import { CID } from 'multiformats/cid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { jobEvents } from '../../../test/record-events.js';
import { startOwnKubo } from '../../../test/ipfs-harness.js';
import type { KuboNode } from '../../../scripts/kubo-node.js';
import { systemClock } from '../../platform/clock.js';
import {
  DirectoryStore,
  IpfsStore,
  fileCid,
  parseFileRoot,
  type ColdStore,
} from '../../stores/cold/index.js';
import { KuboClient } from '../../stores/ipfs/kubo-client.js';
import { AuditService } from '../audit/index.js';
import {
  COLLECTIONS,
  GridFsBlobStore,
  RecorderService,
  RecordsRepository,
  RetentionPolicies,
  RetentionService,
  type RetentionRun,
  type RetentionStep,
} from '../records/index.js';
import { checkProof, SnapshotsService } from './index.js';

const DAY = 86_400_000;

describe.each(['dir', 'ipfs'] as const)(
  'record exports referenced from the next snapshot (%s store)',
  (kind) => {
    let pg: PgTestSchema;
    let mongo: MongoTestDb;
    let dir: string;
    let node: KuboNode | undefined;
    let kubo: KuboClient | undefined;
    let exportsStore: ColdStore;
    let retention: RetentionService;
    let snapshots: SnapshotsService;
    let namespaceId: string;

    beforeAll(async () => {
      [pg, mongo, dir] = await Promise.all([
        createPgTestSchema(),
        createMongoTestDb(),
        mkdtemp(join(tmpdir(), 'rty-record-exports-')),
      ]);
      if (kind === 'ipfs') {
        node = await startOwnKubo();
        kubo = new KuboClient(node.apiUrl);
      }
      const store = (sub: string) =>
        kubo ? new IpfsStore(kubo, join(dir, sub)) : new DirectoryStore(join(dir, sub));
      exportsStore = store('records');
      retention = retentionService();
      snapshots = new SnapshotsService({
        pool: pg.pool,
        log: testLog,
        clock: systemClock,
        audit: new AuditService({ pool: pg.pool, log: testLog }),
        target: store('archive'),
        limits: { rows: 4, bytes: 64 * 1024 },
      });
      namespaceId = (await createNamespaces(pg.pool, 1))[0]!.id;
    }, 300_000);

    afterAll(async () => {
      await node?.stop({ removeRepo: true });
      await Promise.all([mongo?.drop(), pg?.drop(), rm(dir, { recursive: true, force: true })]);
    });

    const retentionService = (onStep?: (step: RetentionStep) => void) =>
      new RetentionService({
        pool: pg.pool,
        repo: new RecordsRepository(mongo.store.db),
        target: exportsStore,
        clock: systemClock,
        log: testLog,
        options: { fileMaxDocs: 10, deleteBatchSize: 25 },
        ...(onStep ? { onStep } : {}),
      });

    async function recordJobs(count: number, ageMs: number): Promise<string[]> {
      const recorder = new RecorderService({
        repo: new RecordsRepository(mongo.store.db),
        blobs: new GridFsBlobStore(mongo.store.db),
        policies: new RetentionPolicies({ pool: pg.pool, clock: systemClock, cacheMs: 0 }),
        log: testLog,
        options: { largePayloadBytes: 1 << 20, maxDocumentBytes: 1 << 22 },
      });
      const events = Array.from({ length: count }, (_, i) =>
        jobEvents({ namespaceId, at: new Date(Date.now() - ageMs + i * 1000), logs: 1 }),
      );
      const out = await recorder.record(events.flat());
      expect(out.every((o) => o.status === 'recorded')).toBe(true);
      return events.map((e) => e[0]!.jobId);
    }

    const jobsLeft = () => mongo.store.db.collection(COLLECTIONS.jobs).countDocuments({ ns: namespaceId });

    /** Every export file and manifest of the runs, as the section lists them: [run, name, cid, sha256, docs]. */
    const listed = (runs: RetentionRun[]) =>
      runs
        .flatMap((r) => [
          ...r.files.map((f) => [r.id, f.name, f.cid, f.sha256, f.count]),
          [
            r.id,
            `${namespaceId}/${r.collection}/${r.id}/manifest.json`,
            r.manifestCid,
            r.manifestSha256,
            r.docCount,
          ],
        ])
        .sort((a, b) => (`${a[0]}\u0000${a[1]}` < `${b[0]}\u0000${b[1]}` ? -1 : 1));

    async function sectionRows(cid: string) {
      const { snap, report } = await snapshots.openVerified(cid);
      const rows: unknown[][] = [];
      for await (const r of snap.rows('record_exports')) rows.push(r);
      await snap.close();
      return { rows, report };
    }

    const readAll = async (s: NodeJS.ReadableStream) => {
      const parts: Buffer[] = [];
      for await (const c of s) parts.push(c as Buffer);
      return Buffer.concat(parts);
    };

    let firstRuns: RetentionRun[];
    let firstSnapshot: string;

    it('exports and deletes expired documents; each export file has a CID (pinned on the IPFS node)', async () => {
      const jobIds = await recordJobs(25, 3 * DAY);
      firstRuns = await retention.sweepNamespace(namespaceId, 1);
      expect(await jobsLeft()).toBe(0);
      const jobsRun = firstRuns.find((r) => r.collection === COLLECTIONS.jobs)!;
      expect(jobsRun.files).toHaveLength(3);
      for (const r of firstRuns) {
        expect(r.manifestCid).toMatch(/^bafy/);
        for (const f of r.files) {
          expect(f.cid).toMatch(/^bafy/);
          const bytes = await readAll(exportsStore.read(f.name, f.cid));
          expect(fileCid(bytes)).toBe(f.cid);
          if (kubo) expect(await kubo.isPinned(f.cid!)).toBe(true);
        }
      }
      const exported = (
        await Promise.all(
          jobsRun.files.map(async (f) =>
            gunzipSync(await readAll(exportsStore.read(f.name, f.cid)))
              .toString('utf8')
              .split('\n')
              .filter(Boolean)
              .map((l) => (BSON.EJSON.parse(l) as { _id: string })._id),
          ),
        )
      ).flat();
      expect(exported.sort()).toEqual(jobIds.sort());
    });

    it('the next snapshot lists those exports with their CIDs and hashes; a proof and the fetched content verify', async () => {
      firstSnapshot = (await snapshots.create()).record.cid;
      const { rows, report } = await sectionRows(firstSnapshot);
      expect(rows.map((r) => [r[0], r[1], r[4], r[5], r[7]])).toEqual(listed(firstRuns));
      expect(rows.every((r) => r[2] === namespaceId)).toBe(true);
      const f = firstRuns.find((r) => r.collection === COLLECTIONS.jobs)!.files[1]!;
      const proof = await snapshots.prove(firstSnapshot, { recordExportCid: f.cid! });
      // Checked against the root of the snapshot pinned by its CID, not the proof's own.
      expect(checkProof(proof, report.roots.record_exports!)).toEqual({ ok: true });
      expect(checkProof(proof, report.roots.credit_balances!).ok).toBe(false);
      const [, name, , , cid, sha256, bytes, docs] = proof.record as [
        string,
        string,
        string,
        string,
        string,
        string,
        number,
        number,
      ];
      expect([name, cid, docs]).toEqual([f.name, f.cid, f.count]);
      // The export, fetched by the referenced CID, verifies against the reference: CID, SHA-256 and size.
      const content = await readAll(exportsStore.read(name, cid));
      expect(fileCid(content)).toBe(cid);
      expect(createHash('sha256').update(content).digest('hex')).toBe(sha256);
      expect(content.length).toBe(bytes);
      const tampered = Buffer.from(content);
      tampered[tampered.length >> 1]! ^= 1;
      expect(fileCid(tampered)).not.toBe(cid);
    });

    it('a snapshot lists only the exports since its predecessor', async () => {
      const second = (await snapshots.create()).record.cid;
      expect((await sectionRows(second)).rows).toEqual([]);
      await recordJobs(5, 3 * DAY);
      const runs = await retention.sweepNamespace(namespaceId, 1);
      expect(runs.length).toBeGreaterThan(0);
      const third = (await snapshots.create()).record.cid;
      const { rows, report } = await sectionRows(third);
      expect(report.prev).toBe(second);
      expect(rows.map((r) => [r[0], r[1], r[4], r[5], r[7]])).toEqual(listed(runs));
    });

    if (kind === 'ipfs')
      it('reads an export by CID: a CID that is not a file root is refused, a missing one is not found', async () => {
        const f = firstRuns.find((r) => r.collection === COLLECTIONS.jobs)!.files[0]!;
        const root = parseFileRoot(CID.parse(f.cid!), (await kubo!.getBlock(f.cid!))!);
        expect(root.chunks.length).toBeGreaterThan(0);
        await expect(readAll(exportsStore.read(f.name, root.chunks[0]!.toString()))).rejects.toMatchObject({
          code: 'integrity_failed',
        });
        const missing = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy';
        await expect(readAll(exportsStore.read(f.name, missing))).rejects.toMatchObject({
          code: 'not_found',
        });
        // The pointer written beside the scratch files names the same CID.
        expect(fileCid(await readAll(exportsStore.read(f.name)))).toBe(f.cid);
      });

    if (kind === 'ipfs')
      it('removing the prefix of a crashed run unpins the files it imported', async () => {
        const w = await exportsStore.write(
          'crashed/run/part-00000.bin',
          Readable.from([Buffer.alloc(300_000, 7)]),
        );
        expect(await kubo!.isPinned(w.cid)).toBe(true);
        await exportsStore.removePrefix('crashed/run');
        expect(await kubo!.isPinned(w.cid)).toBe(false);
        await expect(readAll(exportsStore.read('crashed/run/part-00000.bin'))).rejects.toMatchObject({
          code: 'ENOENT',
        });
      });

    it('a resumed run whose export is gone from cold storage fails and deletes nothing', async () => {
      await recordJobs(12, 3 * DAY);
      const crashing = retentionService((step) => {
        if (step === 'verified') throw new Error('simulated crash after verify');
      });
      await expect(crashing.sweepNamespace(namespaceId, 1)).rejects.toThrow(/simulated crash/);
      const open = (await retention.listReceipts(namespaceId)).find((r) => r.status === 'exported')!;
      const f = open.files[0]!;
      if (kubo) {
        // Unpinned and garbage-collected: the node no longer holds the blocks.
        await kubo.unpin(f.cid!);
        expect((await fetch(`${node!.apiUrl}/api/v0/repo/gc`, { method: 'POST' })).ok).toBe(true);
        await expect(readAll(exportsStore.read(f.name, f.cid))).rejects.toMatchObject({
          code: 'not_found',
        });
      } else await rm(join(dir, 'records', f.name));
      expect(await jobsLeft()).toBe(12);
      // The read error ends the resumed verify (it does not escape as an unhandled stream error).
      await expect(retention.sweepNamespace(namespaceId, 1)).rejects.toThrow(
        kubo ? /is not in ipfs:/ : /ENOENT/,
      );
      expect(await jobsLeft()).toBe(12);
    });
  },
);
