// The normal path against the real FerretDB/MongoDB and PostgreSQL: a finished event carrying its submission
// becomes the job's one document (no log documents unless it failed), is idempotent under redelivery, and is
// read back by every query (list, trace, CSV export, aggregates) as a two-event job document is.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { systemClock } from '../../platform/clock.js';
import {
  COLLECTIONS,
  GridFsBlobStore,
  RecorderService,
  RecordsQueryService,
  RecordsRepository,
  RetentionPolicies,
  type RecordEventInput,
} from './index.js';

let pg: PgTestSchema;
let mongo: MongoTestDb;

beforeAll(async () => {
  [pg, mongo] = await Promise.all([createPgTestSchema({ poolSize: 4 }), createMongoTestDb()]);
});
afterAll(async () => {
  await Promise.all([mongo?.drop(), pg?.drop()]);
});

function services(opts: { largePayloadBytes?: number } = {}) {
  const repo = new RecordsRepository(mongo.store.db);
  const blobs = new GridFsBlobStore(mongo.store.db);
  const policies = new RetentionPolicies({ pool: pg.pool, clock: systemClock, cacheMs: 0 });
  const recorder = new RecorderService({
    repo,
    blobs,
    policies,
    log: testLog,
    options: {
      largePayloadBytes: opts.largePayloadBytes ?? 1024 * 1024,
      maxDocumentBytes: 4 * 1024 * 1024,
    },
  });
  return { repo, recorder, query: new RecordsQueryService({ repo, policies, blobs }) };
}

const node = `0x${'ab'.repeat(20)}`;

function finished(
  ns: string,
  o: { status?: 'succeeded' | 'failed'; at?: Date; prompt?: string; history?: boolean } = {},
): RecordEventInput {
  const at = o.at ?? new Date(Date.now() - 60_000);
  const status = o.status ?? 'succeeded';
  return {
    version: 1,
    type: 'job.finished',
    namespaceId: ns,
    jobId: randomUUID(),
    at: new Date(at.getTime() + 50).toISOString(),
    model: 'llama-3-8b',
    status,
    nodeAddress: node,
    assignedAt: new Date(at.getTime() + 5).toISOString(),
    attempts: o.history ? 2 : 1,
    output:
      status === 'succeeded' ? { text: 'Hello!', tokensIn: 5, tokensOut: 3, finishReason: 'stop' } : null,
    error: status === 'succeeded' ? null : 'node disconnected',
    metrics: { queueMs: 5, executionMs: 40, latencyMs: 50, retries: o.history ? 1 : 0 },
    costMicro: status === 'succeeded' ? '800' : '0',
    ...(status === 'succeeded' ? {} : { code: 'job_failed', cause: 'node_disconnect' }),
    ...(o.history
      ? { history: [{ attempt: 1, nodeAddress: null, reason: 'node timed out', cause: 'node_timeout' }] }
      : {}),
    submitted: {
      at: at.toISOString(),
      apiKeyId: null,
      priority: 'bulk',
      input: {
        messages: [{ role: 'user', content: o.prompt ?? 'Say hello' }],
        params: { temperature: 0.2, 'a.b': 1 },
      },
    },
  };
}

describe('one compact document per job', () => {
  it('writes only the job document for a succeeded job, once under redelivery, with its input and routing', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = services();
    const evs = [finished(ns!.id), finished(ns!.id, { history: true })];
    const first = await s.recorder.record(evs);
    expect(first.map((o) => o.status)).toEqual(['recorded', 'recorded']);
    const again = await s.recorder.record([...evs].reverse());
    expect(again.map((o) => o.status)).toEqual(['duplicate', 'duplicate']);

    const db = mongo.store.db;
    expect(await db.collection(COLLECTIONS.jobs).countDocuments({ ns: ns!.id })).toBe(2);
    expect(await db.collection(COLLECTIONS.logs).countDocuments({ ns: ns!.id })).toBe(0);

    const e0 = evs[0] as Extract<RecordEventInput, { type: 'job.finished' }>;
    const trace = await s.query.getTrace(ns!.id, e0.jobId);
    expect(trace.events).toEqual([]);
    expect(trace.job).toMatchObject({
      _id: e0.jobId,
      ts: new Date(e0.submitted!.at),
      priority: 'bulk',
      status: 'succeeded',
      input: { messages: [{ role: 'user', content: 'Say hello' }], params: { temperature: 0.2, 'a.b': 1 } },
      routing: { node, attempts: 1 },
      output: { text: 'Hello!', tokensIn: 5, tokensOut: 3, finishReason: 'stop' },
      costMicro: 800,
    });
    expect(trace.job!.routing.history).toBeUndefined();
    const e1 = evs[1] as Extract<RecordEventInput, { type: 'job.finished' }>;
    const retried = await s.query.getTrace(ns!.id, e1.jobId);
    expect(retried.job!.routing.history).toEqual([
      { attempt: 1, nodeAddress: null, reason: 'node timed out', cause: 'node_timeout' },
    ]);

    const page = await s.query.listJobs(ns!.id, {}, { limit: 10 });
    expect(page.items.map((j) => j._id).sort()).toEqual([e0.jobId, e1.jobId].sort());
    const agg = await s.query.aggregate(ns!.id, { by: 'model' });
    expect(agg).toMatchObject([{ key: 'llama-3-8b', requests: 2, errors: 0, tokensIn: 10, tokensOut: 6 }]);
  });

  it('keeps an error log (without the input) for a failed job, and its codes on the job document', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = services();
    const e = finished(ns!.id, { status: 'failed' }) as Extract<RecordEventInput, { type: 'job.finished' }>;
    expect((await s.recorder.record([e]))[0]!.status).toBe('recorded');
    const trace = await s.query.getTrace(ns!.id, e.jobId);
    expect(trace.job).toMatchObject({
      status: 'failed',
      isError: 1,
      error: 'node disconnected',
      code: 'job_failed',
      cause: 'node_disconnect',
      input: { messages: [{ role: 'user', content: 'Say hello' }] },
    });
    expect(trace.events).toHaveLength(1);
    expect(trace.events[0]).toMatchObject({ type: 'job.finished', logType: 'error' });
    expect(trace.events[0]!.body.submitted).toBeUndefined();
    expect((await s.recorder.record([e]))[0]!.status).toBe('duplicate');
    expect(await mongo.store.db.collection(COLLECTIONS.logs).countDocuments({ ns: ns!.id })).toBe(1);
  });

  it('moves a large input to a blob that the job document references', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = services({ largePayloadBytes: 1000 });
    const big = 'x'.repeat(5000);
    const e = finished(ns!.id, { prompt: big }) as Extract<RecordEventInput, { type: 'job.finished' }>;
    expect((await s.recorder.record([e]))[0]!.status).toBe('recorded');
    const trace = await s.query.getTrace(ns!.id, e.jobId);
    const content = (trace.job!.input as { messages: Array<{ content: { __blob__: { id: string } } }> })
      .messages[0]!.content;
    expect(content.__blob__.id).toMatch(new RegExp(`^${ns!.id}:${e.jobId}:[0-9a-f]{64}$`));
    expect((await s.query.readBlob(ns!.id, content.__blob__.id)).toString('utf8')).toBe(big);
  });
});
