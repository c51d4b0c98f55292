// Retention against the real FerretDB/MongoDB, PostgreSQL and a directory target: export → verify → delete with
// receipts, resumed after crashes at every step; one runner at a time.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { BSON } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { jobEvents } from '../../../test/record-events.js';
import { TaskRunner } from '../../background/task-runner.js';
import { systemClock } from '../../platform/clock.js';
import {
  COLLECTIONS,
  GridFsBlobStore,
  RecorderService,
  RecordsRepository,
  RetentionPolicies,
  RetentionService,
  type RetentionRun,
  type RetentionStep,
} from './index.js';
import { DirectoryStore } from '../../stores/cold/index.js';

let pg: PgTestSchema;
let mongo: MongoTestDb;
let dir: string;
const DAY = 86_400_000;
const run = promisify(execFile);

beforeAll(async () => {
  [pg, mongo] = await Promise.all([createPgTestSchema({ poolSize: 6 }), createMongoTestDb()]);
  dir = await mkdtemp(join(tmpdir(), 'rty-retention-'));
});
afterAll(async () => {
  await Promise.all([mongo?.drop(), pg?.drop(), rm(dir, { recursive: true, force: true })]);
});

function retention(
  opts: {
    crashAt?: { step: RetentionStep; nth: number };
    onStep?: (s: RetentionStep, run: RetentionRun) => Promise<void>;
  } = {},
) {
  let seen = 0;
  return new RetentionService({
    pool: pg.pool,
    repo: new RecordsRepository(mongo.store.db),
    target: new DirectoryStore(dir),
    clock: systemClock,
    log: testLog,
    options: { fileMaxDocs: 40, deleteBatchSize: 25 },
    onStep: async (step, run) => {
      await opts.onStep?.(step, run);
      if (opts.crashAt && step === opts.crashAt.step && ++seen === opts.crashAt.nth)
        throw new Error(`simulated crash at ${step}`);
    },
  });
}

async function recordJobs(namespaceId: string, count: number, ageMs: number) {
  const repo = new RecordsRepository(mongo.store.db);
  const recorder = new RecorderService({
    repo,
    blobs: new GridFsBlobStore(mongo.store.db),
    policies: new RetentionPolicies({ pool: pg.pool, clock: systemClock, cacheMs: 0 }),
    log: testLog,
    options: { largePayloadBytes: 1024, maxDocumentBytes: 1 << 22 },
  });
  const events = Array.from({ length: count }, (_, i) =>
    // Each prompt is over the 1 KiB threshold: one GridFS blob per job, which retention exports and deletes too.
    jobEvents({
      namespaceId,
      at: new Date(Date.now() - ageMs + i * 1000),
      logs: 1,
      prompt: `${i}:${'p'.repeat(1500)}`,
    }),
  ).flat();
  const out = await recorder.record(events);
  expect(out.every((o) => o.status === 'recorded')).toBe(true);
}

const BLOB_FILES = 'record_blobs.files';

async function idsOf(namespaceId: string, filter: { ts?: Record<string, Date> } = {}) {
  const out = new Map<string, string[]>();
  for (const c of Object.values(COLLECTIONS)) {
    const rows = await mongo.store.db
      .collection(c)
      .find({ ns: namespaceId, ...filter }, { projection: { _id: 1 } })
      .toArray();
    out.set(c, rows.map((r) => String(r._id)).sort());
  }
  const blobs = await mongo.store.db
    .collection(BLOB_FILES)
    .find(
      { 'metadata.ns': namespaceId, ...(filter.ts ? { 'metadata.ts': filter.ts } : {}) },
      { projection: { _id: 1 } },
    )
    .toArray();
  out.set(BLOB_FILES, blobs.map((r) => String(r._id)).sort());
  return out;
}

async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(relative(root, join(e.parentPath, e.name)));
  return out.sort();
}

/** Every expired document is in exactly one verified export file of a done receipt and gone; the rest kept. */
async function expectSweptExactlyOnce(
  namespaceId: string,
  expired: Map<string, string[]>,
  kept: Map<string, string[]>,
  extraExported: Record<string, string[]> = {},
) {
  const receipts = await retention().listReceipts(namespaceId);
  expect(receipts.every((r) => r.status === 'done' && r.docCount === r.deletedCount)).toBe(true);
  // Every exported document, read back from the files themselves, exactly once; hashes match the receipts.
  const exported = new Map<string, string[]>();
  for (const r of receipts) {
    for (const f of r.files) {
      const raw = await readFile(join(dir, f.name));
      expect(createHash('sha256').update(raw).digest('hex')).toBe(f.sha256);
      const docs = gunzipSync(raw)
        .toString('utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => BSON.EJSON.parse(l, { relaxed: false }) as { _id: string; ns: string; ts: Date });
      expect(docs).toHaveLength(f.count);
      expect(docs.every((d) => d.ns === namespaceId && d.ts < r.cutoff)).toBe(true);
      exported.set(r.collection, [...(exported.get(r.collection) ?? []), ...docs.map((d) => d._id)]);
    }
  }
  const expectedExport = new Map(expired);
  for (const [c, extra] of Object.entries(extraExported))
    expectedExport.set(c, [...expectedExport.get(c)!, ...extra].sort());
  for (const [c, ids] of expectedExport) expect((exported.get(c) ?? []).sort()).toEqual(ids);
  // Only the files of the receipts (and their manifests) are in the target: the crashed attempt left nothing.
  const expectedFiles = receipts.flatMap((r) => [
    ...r.files.map((f) => f.name),
    `${namespaceId}/${r.collection}/${r.id}/manifest.json`,
  ]);
  expect((await listFiles(dir)).filter((f) => f.startsWith(namespaceId))).toEqual(expectedFiles.sort());
  // Gone from the store, the rest untouched.
  const after = await idsOf(namespaceId);
  for (const [c, ids] of kept) expect(after.get(c)).toEqual(ids);
  // No chunk of a deleted blob is left behind.
  expect(
    await mongo.store.db
      .collection('record_blobs.chunks')
      .countDocuments({ files_id: { $in: expired.get(BLOB_FILES)! } }),
  ).toBe(0);
}

describe('retention sweep', () => {
  it('after crashes at every step, every expired document is in exactly one verified export and nothing else is deleted', async () => {
    const [a, b] = await createNamespaces(pg.pool, 2);
    await pg.pool.query('update namespaces set retention_days = 30 where id = any($1)', [[a!.id, b!.id]]);
    await recordJobs(a!.id, 30, 10 * DAY);
    await recordJobs(a!.id, 10, DAY);
    await recordJobs(b!.id, 20, 10 * DAY);
    await pg.pool.query('update namespaces set retention_days = 7 where id = $1', [a!.id]);
    const cutoff = new Date(Date.now() - 7 * DAY);
    const expired = await idsOf(a!.id, { ts: { $lt: cutoff } });
    const kept = await idsOf(a!.id, { ts: { $gte: cutoff } });
    const before = await idsOf(b!.id);
    expect(expired.get(COLLECTIONS.jobs)).toHaveLength(30);
    expect(expired.get(COLLECTIONS.logs)).toHaveLength(30 * 4);
    expect(expired.get(BLOB_FILES)).toHaveLength(30);

    // Crash 1: export written, not yet verified. Crash 2: verified, nothing deleted yet (a late document with
    // an old timestamp arrives meanwhile). Crash 3: between delete batches. Then a clean run finishes.
    await expect(retention({ crashAt: { step: 'exported-unverified', nth: 1 } }).sweep()).rejects.toThrow(
      /crash/,
    );
    expect(await idsOf(a!.id, { ts: { $lt: cutoff } })).toEqual(expired);
    const late = { _id: `${a!.id}:late`, ns: a!.id, jobId: 'late', ts: new Date(Date.now() - 9 * DAY) };
    await expect(
      retention({
        crashAt: { step: 'verified', nth: 2 },
        onStep: async (s, run) => {
          if (s === 'verified' && run.collection === COLLECTIONS.logs)
            await mongo.store.db
              .collection(COLLECTIONS.logs)
              .updateOne({ _id: late._id as never }, { $setOnInsert: late }, { upsert: true });
        },
      }).sweep(),
    ).rejects.toThrow(/crash/);
    expect((await idsOf(a!.id, { ts: { $lt: cutoff } })).get(COLLECTIONS.logs)).toContain(late._id);
    await expect(retention({ crashAt: { step: 'deleted-batch', nth: 2 } }).sweep()).rejects.toThrow(/crash/);
    const first = await retention().sweep();
    expect(first.deleted).toBeGreaterThan(0);
    // The late document was not part of the verified export, so that run left it; the next sweep takes it.
    expect((await idsOf(a!.id)).get(COLLECTIONS.logs)).toContain(late._id);
    await retention().sweep();

    await expectSweptExactlyOnce(a!.id, expired, kept, { [COLLECTIONS.logs]: [late._id] });
    // The other namespace is untouched.
    expect(await idsOf(b!.id)).toEqual(before);
  });

  it('a worker process killed (SIGKILL) between export and delete and between delete batches loses nothing', async () => {
    const [a] = await createNamespaces(pg.pool, 1);
    await pg.pool.query('update namespaces set retention_days = 30 where id = $1', [a!.id]);
    await recordJobs(a!.id, 20, 10 * DAY);
    await recordJobs(a!.id, 5, DAY);
    await pg.pool.query('update namespaces set retention_days = 7 where id = $1', [a!.id]);
    const cutoff = new Date(Date.now() - 7 * DAY);
    const expired = await idsOf(a!.id, { ts: { $lt: cutoff } });
    const kept = await idsOf(a!.id, { ts: { $gte: cutoff } });
    const kill = async (step: RetentionStep, nth: number) => {
      const err = await run(
        process.execPath,
        ['--import', 'tsx', 'test/retention-crash.child.ts', mongo.dbName, pg.schema, dir, step, String(nth)],
        {
          timeout: 120_000,
        },
      ).then(
        () => undefined,
        (e: { signal?: string }) => e,
      );
      expect(err?.signal).toBe('SIGKILL');
    };
    // Killed after the first verified export (jobs), before any delete; then after the second delete batch of
    // the next run (logs: 80 documents in batches of 25).
    await kill('verified', 1);
    expect(await idsOf(a!.id, { ts: { $lt: cutoff } })).toEqual(expired);
    await kill('deleted-batch', 3);
    const open = await pg.pool.query<{ n: number }>(
      `select count(*)::int as n from retention_runs where namespace_id = $1 and status <> 'done'`,
      [a!.id],
    );
    expect(open.rows[0]!.n).toBe(1);
    await retention().sweep();
    await expectSweptExactlyOnce(a!.id, expired, kept);
  });

  it('runs on one runner at a time across processes (advisory lock)', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    await pg.pool.query('update namespaces set retention_days = 30 where id = $1', [ns!.id]);
    await recordJobs(ns!.id, 5, 10 * DAY);
    await pg.pool.query('update namespaces set retention_days = 7 where id = $1', [ns!.id]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const slow = retention({
      onStep: async (s) => {
        if (s === 'verified') {
          entered();
          await gate;
        }
      },
    });
    const task = (svc: RetentionService) => ({
      name: 'records-retention',
      intervalMs: 60_000,
      run: () => svc.sweep(),
    });
    const r1 = new TaskRunner({ pool: pg.pool, log: testLog, tasks: [] });
    const r2 = new TaskRunner({ pool: pg.pool, log: testLog, tasks: [] });
    const first = r1.runOnce(task(slow));
    await inside;
    expect(await r2.runOnce(task(retention()))).toBe(false);
    release();
    expect(await first).toBe(true);
    expect(
      (await idsOf(ns!.id, { ts: { $lt: new Date(Date.now() - 7 * DAY) } })).get(COLLECTIONS.jobs),
    ).toEqual([]);
    await Promise.all([r1.stop(), r2.stop()]);
  });
});
