// Recorder and queries against the real FerretDB/MongoDB and PostgreSQL: idempotency under redelivery and
// reordering, namespace isolation, cursor pagination, operator-injection safety, size limits, retention reads.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { jobEvents } from '../../../test/record-events.js';
import { systemClock } from '../../platform/clock.js';
import { isAppError } from '../../platform/errors.js';
import {
  COLLECTIONS,
  GridFsBlobStore,
  RecorderService,
  RecordsQueryService,
  RecordsRepository,
  RetentionPolicies,
  type RecordEventInput,
  type RecordOutcome,
} from './index.js';

let pg: PgTestSchema;
let mongo: MongoTestDb;
let mongo2: MongoTestDb;

function servicesOn(db: MongoTestDb, opts: { largePayloadBytes?: number; maxDocumentBytes?: number } = {}) {
  const repo = new RecordsRepository(db.store.db);
  const blobs = new GridFsBlobStore(db.store.db);
  const policies = new RetentionPolicies({ pool: pg.pool, clock: systemClock, cacheMs: 0 });
  const recorder = new RecorderService({
    repo,
    blobs,
    policies,
    log: testLog,
    options: {
      largePayloadBytes: opts.largePayloadBytes ?? 1024 * 1024,
      maxDocumentBytes: opts.maxDocumentBytes ?? 4 * 1024 * 1024,
    },
  });
  return { repo, recorder, policies, query: new RecordsQueryService({ repo, policies, blobs }) };
}

beforeAll(async () => {
  [pg, mongo, mongo2] = await Promise.all([
    createPgTestSchema({ poolSize: 4 }),
    createMongoTestDb(),
    createMongoTestDb(),
  ]);
});
afterAll(async () => {
  await Promise.all([mongo?.drop(), mongo2?.drop(), pg?.drop()]);
});

function shuffle<T>(xs: T[], seed: number): T[] {
  const a = [...xs];
  let s = seed;
  for (let i = a.length - 1; i > 0; i -= 1) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

async function dump(db: MongoTestDb, ns: string) {
  const out: Record<string, unknown[]> = {};
  for (const c of Object.values(COLLECTIONS))
    out[c] = await db.store.db.collection(c).find({ ns }).sort({ _id: 1 }).toArray();
  return out;
}

describe('recorder', () => {
  it('gives identical documents when the same events are delivered twice, in another order, concurrently', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const now = Date.now();
    const events: RecordEventInput[] = [];
    for (let j = 0; j < 40; j += 1)
      events.push(
        ...jobEvents({
          namespaceId: ns!.id,
          at: new Date(now - 3_600_000 + j * 1000),
          status: j % 5 === 0 ? 'failed' : 'succeeded',
          fallbacks: j % 3,
          logs: 2,
        }),
      );
    events.push({
      version: 1,
      namespaceId: ns!.id,
      jobId: (events[0] as { jobId: string }).jobId,
      at: new Date(now - 1000).toISOString(),
      type: 'qc.result',
      eventId: 'qc-1',
      nodeAddress: `0x${'ab'.repeat(20)}`,
      verdict: 'pass',
      score: 0.9,
    });
    const a = servicesOn(mongo);
    const inOrder = await a.recorder.record(events);
    expect(inOrder.every((o) => o.status === 'recorded')).toBe(true);

    // Second store: shuffled, split in small batches, every batch delivered twice by two recorders at once.
    const b = servicesOn(mongo2);
    const b2 = servicesOn(mongo2);
    const shuffled = shuffle(events, 7);
    const batches: RecordEventInput[][] = [];
    for (let i = 0; i < shuffled.length; i += 13) batches.push(shuffled.slice(i, i + 13));
    await Promise.all([
      (async () => {
        for (const batch of batches) await b.recorder.record(batch);
      })(),
      (async () => {
        for (const batch of [...batches].reverse()) await b2.recorder.record(batch);
      })(),
    ]);
    const again = await b.recorder.record(shuffle(events, 3));
    expect(again.every((o) => o.status === 'duplicate')).toBe(true);

    const [d1, d2] = await Promise.all([dump(mongo, ns!.id), dump(mongo2, ns!.id)]);
    expect(d1[COLLECTIONS.jobs]).toHaveLength(40);
    // Every event, the QC result included, is one append-only log document.
    expect(d1[COLLECTIONS.logs]).toHaveLength(events.length);
    expect(d1[COLLECTIONS.qc]).toHaveLength(1);
    expect(d2).toEqual(d1);
  });

  it('writes the job document when the finished event arrives before the submitted one', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = servicesOn(mongo);
    const evs = jobEvents({ namespaceId: ns!.id, at: new Date(Date.now() - 5000), fallbacks: 2 });
    const finished = evs[evs.length - 1]!;
    await s.recorder.record([finished]);
    expect((await s.query.listJobs(ns!.id)).items).toHaveLength(0);
    await s.recorder.record(evs.slice(0, -1).reverse());
    const trace = await s.query.getTrace(ns!.id, (finished as { jobId: string }).jobId);
    expect(trace.job?.status).toBe('succeeded');
    expect(trace.job?.routing.attempts).toBe(3);
    expect(trace.events.map((e) => e.type)).toEqual([
      'job.submitted',
      'job.fallback',
      'job.fallback',
      'job.assigned',
      'job.finished',
    ]);
    expect(trace.events.filter((e) => e.type === 'job.fallback').map((e) => e.body.reason)).toEqual([
      'timeout',
      'timeout',
    ]);
  });

  it('rejects a bad event or one over the size limit and writes nothing for it', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = servicesOn(mongo, { largePayloadBytes: 1024 * 1024, maxDocumentBytes: 64 * 1024 });
    const big = jobEvents({ namespaceId: ns!.id, at: new Date(), prompt: 'y'.repeat(200 * 1024) });
    const ok = jobEvents({ namespaceId: ns!.id, at: new Date() });
    const out = await s.recorder.record([...big, { version: 2, type: 'job.submitted' }, ...ok]);
    const errorOf = (o: RecordOutcome | undefined) => (o?.status === 'rejected' ? o.error : undefined);
    expect(isAppError(errorOf(out[0]), 'payload_too_large')).toBe(true);
    expect(isAppError(errorOf(out[big.length]), 'invalid_request')).toBe(true);
    expect(out.slice(big.length + 1).every((o) => o.status === 'recorded')).toBe(true);
    const unknown = await s.recorder.record(jobEvents({ namespaceId: randomUUID(), at: new Date() }));
    expect(unknown.every((o) => isAppError(errorOf(o), 'namespace_not_found'))).toBe(true);
    const bigJob = (big[0] as { jobId: string }).jobId;
    expect(
      await mongo.store.db
        .collection(COLLECTIONS.logs)
        .countDocuments({ ns: ns!.id, jobId: bigJob, type: 'job.submitted' }),
    ).toBe(0);
    expect(await mongo.store.db.collection(COLLECTIONS.jobs).countDocuments({ _id: bigJob as never })).toBe(
      0,
    );
    expect(
      await mongo.store.db.collection('record_blobs.files').countDocuments({ 'metadata.ns': ns!.id }),
    ).toBe(0);
  });

  it('moves a large payload to GridFS, referenced by id and SHA-256, and reads it back verified', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = servicesOn(mongo, { largePayloadBytes: 64 * 1024 });
    const image = Buffer.alloc(300 * 1024, 9).toString('base64');
    const evs = jobEvents({ namespaceId: ns!.id, at: new Date() });
    (evs[0] as { input: { attachments?: unknown[] } }).input.attachments = [
      { mediaType: 'image/png', data: image },
    ];
    expect((await s.recorder.record(evs)).every((o) => o.status === 'recorded')).toBe(true);
    expect((await s.recorder.record(evs)).every((o) => o.status === 'duplicate')).toBe(true);
    const trace = await s.query.getTrace(ns!.id, (evs[0] as { jobId: string }).jobId);
    const att = (
      trace.job!.input.attachments as Array<{
        data: { __blob__: { id: string; sha256: string; bytes: number } };
      }>
    )[0]!;
    expect(att.data.__blob__.bytes).toBe(Buffer.byteLength(image));
    const back = await s.query.readBlob(ns!.id, att.data.__blob__.id);
    expect(back.toString('utf8')).toBe(image);
    const [other] = await createNamespaces(pg.pool, 1);
    await expect(s.query.readBlob(other!.id, att.data.__blob__.id)).rejects.toMatchObject({
      code: 'not_found',
    });
  });
});

describe('queries', () => {
  it('pages with a cursor through every job exactly once, newest first, ties included', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = servicesOn(mongo);
    const at = new Date(Date.now() - 60_000);
    const events = Array.from({ length: 25 }, (_, i) =>
      jobEvents({ namespaceId: ns!.id, at: new Date(at.getTime() + Math.floor(i / 5) * 1000) }),
    ).flat();
    await s.recorder.record(events);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pageNo = 0; pageNo < 10; pageNo += 1) {
      const page = await s.query.listJobs(ns!.id, {}, { limit: 10, cursor });
      seen.push(...page.items.map((j) => j._id));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    expect(seen).toHaveLength(25);
    expect(new Set(seen).size).toBe(25);
    await expect(s.query.listJobs(ns!.id, {}, { cursor: 'not-a-cursor' })).rejects.toMatchObject({
      code: 'invalid_cursor',
    });
  });

  it('never lets another namespace read, page, trace, aggregate or export these records', async () => {
    const [a, b] = await createNamespaces(pg.pool, 2);
    const s = servicesOn(mongo);
    const evA = jobEvents({ namespaceId: a!.id, at: new Date(), model: 'shared-model', logs: 1 });
    const evB = jobEvents({ namespaceId: b!.id, at: new Date(), model: 'shared-model', logs: 1 });
    await s.recorder.record([...evA, ...evB]);
    const jobA = (evA[0] as { jobId: string }).jobId;
    const jobB = (evB[0] as { jobId: string }).jobId;
    for (const [ns, own, foreign] of [
      [a!.id, jobA, jobB],
      [b!.id, jobB, jobA],
    ] as const) {
      const jobs = await s.query.listJobs(ns, { model: 'shared-model' });
      expect(jobs.items.map((j) => j._id)).toEqual([own]);
      const logs = await s.query.listLogs(ns, {});
      expect(logs.items.length).toBeGreaterThan(0);
      expect(logs.items.every((l) => l.ns === ns && l.jobId === own)).toBe(true);
      const routing = await s.query.listLogs(ns, { model: 'shared-model', logType: 'routing' });
      expect(routing.items.map((l) => [l.jobId, l.type])).toEqual([[own, 'job.assigned']]);
      await expect(s.query.getTrace(ns, foreign)).rejects.toMatchObject({ code: 'not_found' });
      const agg = await s.query.aggregate(ns, { by: 'model' });
      expect(agg.reduce((n, r) => n + r.requests, 0)).toBe(1);
      let text = '';
      for await (const chunk of await s.query.exportJobs(ns, {}, 'jsonl')) text += String(chunk);
      expect(text).toContain(own);
      expect(text).not.toContain(foreign);
    }
  });

  it('treats operator-like filter values and keys as data, never as operators', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = servicesOn(mongo);
    const evs = jobEvents({
      namespaceId: ns!.id,
      at: new Date(),
      model: '$gt',
      params: { 'a.b': 1, $where: 'sleep(1000)', _x: { $ne: null }, 'x%2E': 2 },
    });
    await s.recorder.record(evs);
    for (const bad of [
      { model: { $gt: '' } },
      { $where: 'true' },
      { model: ['x'] },
      { 'input.prompt': 'x' },
    ]) {
      await expect(s.query.listJobs(ns!.id, bad as never)).rejects.toMatchObject({ code: 'invalid_filter' });
    }
    const page = await s.query.listJobs(ns!.id, { model: '$gt' });
    expect(page.items).toHaveLength(1);
    expect(page.items[0]!.input.params).toEqual({
      'a.b': 1,
      $where: 'sleep(1000)',
      _x: { $ne: null },
      'x%2E': 2,
    });
    const raw = await mongo.store.db
      .collection(COLLECTIONS.jobs)
      .findOne({ _id: page.items[0]!._id as never });
    expect(Object.keys(raw!.input.params).sort()).toEqual(['%24where', '%5Fx', 'a%2Eb', 'x%252E']);
    expect((await s.query.listJobs(ns!.id, { model: 'other' })).items).toHaveLength(0);
  });

  it('log documents come back decoded: nested arrays, U+0000, lone surrogates and escaped keys as submitted', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = servicesOn(mongo);
    const params = { tools: [[1, 2], [[3]]], $where: 'a\u0000b', 'a.b': '\ud800', '': 'empty key', _x: [] };
    await s.recorder.record(jobEvents({ namespaceId: ns!.id, at: new Date(), params, prompt: 'p\u0000' }));
    const logs = (await s.query.listLogs(ns!.id, {})).items;
    const submitted = logs.find((l) => l.type === 'job.submitted')!;
    const body = JSON.stringify(submitted.body);
    expect(body).not.toMatch(/__text__|__array__|%24|%2E|%5F/);
    const input = (submitted.body as { input: { params: unknown; messages: unknown } }).input;
    expect(input.params).toEqual(params);
    expect(input.messages).toEqual([{ role: 'user', content: 'p\u0000' }]);
    const trace = await s.query.getTrace(ns!.id, submitted.jobId);
    expect(trace.events.find((e) => e.type === 'job.submitted')!.body).toEqual(submitted.body);
  });

  it('a model holding U+0000 is stored encoded and found by a filter naming it, never a store error', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = servicesOn(mongo);
    const model = 'lla\u0000ma\ud800';
    await s.recorder.record(jobEvents({ namespaceId: ns!.id, at: new Date(), model, prompt: 'x\u0000' }));
    const page = await s.query.listJobs(ns!.id, { model });
    expect(page.items).toHaveLength(1);
    expect(page.items[0]!.model).toBe('lla\\u0000ma\\ud800');
    expect(page.items[0]!.input.messages).toEqual([{ role: 'user', content: 'x\u0000' }]);
    expect((await s.query.listLogs(ns!.id, { model })).items.length).toBeGreaterThan(0);
    expect((await s.query.listJobs(ns!.id, { model: '\u0000' })).items).toHaveLength(0);
  });

  it('never returns documents past the namespace retention, even before the sweep', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = servicesOn(mongo);
    const old = jobEvents({ namespaceId: ns!.id, at: new Date(Date.now() - 5 * 86_400_000), logs: 1 });
    const fresh = jobEvents({ namespaceId: ns!.id, at: new Date(Date.now() - 3_600_000), logs: 1 });
    await s.recorder.record([...old, ...fresh]);
    expect((await s.query.listJobs(ns!.id)).items).toHaveLength(2);
    await pg.pool.query('update namespaces set retention_days = 2 where id = $1', [ns!.id]);
    const jobs = await s.query.listJobs(ns!.id);
    expect(jobs.items.map((j) => j._id)).toEqual([(fresh[0] as { jobId: string }).jobId]);
    const logs = await s.query.listLogs(ns!.id);
    expect(logs.items.every((l) => l.jobId === (fresh[0] as { jobId: string }).jobId)).toBe(true);
    await expect(s.query.getTrace(ns!.id, (old[0] as { jobId: string }).jobId)).rejects.toMatchObject({
      code: 'not_found',
    });
    // A redelivered event already past retention is dropped, not stored again.
    const late = await s.recorder.record(
      jobEvents({ namespaceId: ns!.id, jobId: randomUUID(), at: new Date(Date.now() - 3 * 86_400_000) }),
    );
    expect(late.every((o) => o.status === 'expired')).toBe(true);
  });
});
