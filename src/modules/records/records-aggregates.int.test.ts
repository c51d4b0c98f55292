// Aggregates and streamed exports against the real FerretDB/MongoDB: values equal those computed independently
// from the raw events; a 100,000-document export streams in bounded memory.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { createMongoTestDb, type MongoTestDb } from '../../../test/mongo-harness.js';
import { jobEvents } from '../../../test/record-events.js';
import { systemClock } from '../../platform/clock.js';
import {
  COLLECTIONS,
  GridFsBlobStore,
  RecorderService,
  RecordsQueryService,
  RecordsRepository,
  RetentionPolicies,
  type JobDoc,
} from './index.js';

const run = promisify(execFile);
let pg: PgTestSchema;
let mongo: MongoTestDb;

beforeAll(async () => {
  [pg, mongo] = await Promise.all([createPgTestSchema({ poolSize: 4 }), createMongoTestDb()]);
});
afterAll(async () => {
  await Promise.all([mongo?.drop(), pg?.drop()]);
});

function services() {
  const repo = new RecordsRepository(mongo.store.db);
  const blobs = new GridFsBlobStore(mongo.store.db);
  const policies = new RetentionPolicies({ pool: pg.pool, clock: systemClock, cacheMs: 0 });
  const recorder = new RecorderService({
    repo,
    blobs,
    policies,
    log: testLog,
    options: { largePayloadBytes: 1 << 20, maxDocumentBytes: 1 << 22 },
  });
  return { repo, recorder, query: new RecordsQueryService({ repo, policies, blobs }) };
}

/** Nearest-rank percentile of a plain list: the independent reference for the histogram-based figure. */
function nearestRank(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(1, Math.ceil((p / 100) * s.length)) - 1]!;
}

describe('aggregates', () => {
  it('equal request counts, error rates, latency percentiles, tokens and credits computed from the raw events', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = services();
    const keys = [randomUUID(), randomUUID()];
    const models = ['m-a', 'm-b', 'm-c'];
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const raw: Array<{
      model: string;
      key: string;
      day: string;
      failed: boolean;
      latency: number;
      tin: number;
      tout: number;
      cost: number;
    }> = [];
    const events = [];
    for (let i = 0; i < 300; i += 1) {
      const at = new Date(Date.now() - (i % 2) * 86_400_000 - 3_600_000 - i * 1000);
      const r = {
        model: models[rnd(3)]!,
        key: keys[rnd(2)]!,
        day: at.toISOString().slice(0, 10),
        failed: rnd(7) === 0,
        latency: 20 + rnd(500),
        tin: 1 + rnd(100),
        tout: 1 + rnd(200),
        cost: 100 + rnd(5000),
      };
      raw.push(r);
      events.push(
        ...jobEvents({
          namespaceId: ns!.id,
          at,
          model: r.model,
          apiKeyId: r.key,
          status: r.failed ? 'failed' : 'succeeded',
          latencyMs: r.latency,
          tokensIn: r.tin,
          tokensOut: r.tout,
          costMicro: r.cost,
        }),
      );
    }
    for (let i = 0; i < events.length; i += 200) await s.recorder.record(events.slice(i, i + 200));

    for (const by of ['model', 'apiKeyId'] as const) {
      const expected = new Map<string, typeof raw>();
      for (const r of raw) {
        const k = JSON.stringify([by === 'model' ? r.model : r.key, r.day]);
        expected.set(k, [...(expected.get(k) ?? []), r]);
      }
      const rows = await s.query.aggregate(ns!.id, { by });
      expect(rows).toHaveLength(expected.size);
      for (const row of rows) {
        const group = expected.get(JSON.stringify([row.key, row.day]))!;
        const ok = group.filter((g) => !g.failed);
        expect(row).toEqual({
          key: row.key,
          day: row.day,
          requests: group.length,
          errors: group.length - ok.length,
          errorRate: (group.length - ok.length) / group.length,
          latencyP50: nearestRank(
            ok.map((g) => g.latency),
            50,
          ),
          latencyP95: nearestRank(
            ok.map((g) => g.latency),
            95,
          ),
          latencyP99: nearestRank(
            ok.map((g) => g.latency),
            99,
          ),
          // A failed job has no output: no tokens.
          tokensIn: ok.reduce((n, g) => n + g.tin, 0),
          tokensOut: ok.reduce((n, g) => n + g.tout, 0),
          creditsMicro: group.reduce((n, g) => n + g.cost, 0),
        });
      }
    }
  });

  it('exports the filtered jobs as CSV with escaped cells', async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const s = services();
    await s.recorder.record([
      ...jobEvents({ namespaceId: ns!.id, at: new Date(), model: 'm,"quoted"' }),
      ...jobEvents({ namespaceId: ns!.id, at: new Date(), model: '=cmd()' }),
      ...jobEvents({ namespaceId: ns!.id, at: new Date(), model: 'other' }),
    ]);
    let csv = '';
    for await (const c of await s.query.exportJobs(ns!.id, { model: 'm,"quoted"' }, 'csv')) csv += String(c);
    const lines = csv.trimEnd().split('\n');
    expect(lines[0]).toBe(
      'job_id,ts,model,api_key_id,status,node,attempts,tokens_in,tokens_out,latency_ms,cost_micro,finish_reason',
    );
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain(',"m,""quoted""",');
    csv = '';
    for await (const c of await s.query.exportJobs(ns!.id, { model: '=cmd()' }, 'csv')) csv += String(c);
    expect(csv).toContain(",'=cmd(),");
  });
});

describe('export of 100,000 documents', () => {
  it('streams JSONL with the process RSS growing by less than 100 MB', { timeout: 480_000 }, async () => {
    const [ns] = await createNamespaces(pg.pool, 1);
    const total = 100_000;
    const text = 'x'.repeat(600);
    const t0 = Date.now() - 3_600_000;
    // Bulk insert of ready job documents (the recorder's output shape), 5,000 per insertMany.
    for (let i = 0; i < total; i += 5000) {
      const docs: JobDoc[] = [];
      for (let j = i; j < Math.min(total, i + 5000); j += 1) {
        const ts = new Date(t0 + j);
        docs.push({
          _id: `job-${String(j).padStart(6, '0')}`,
          ns: ns!.id,
          ts,
          day: ts.toISOString().slice(0, 10),
          model: 'bulk-model',
          apiKeyId: null,
          priority: 'bulk',
          blind: false,
          status: 'succeeded',
          isError: 0,
          input: { prompt: 'p' },
          routing: { node: null, assignedAt: null, attempts: 1 },
          output: { text, tokensIn: 1, tokensOut: 1, finishReason: 'stop' },
          error: null,
          flags: { failure: false, moderation: false, lowConfidence: false, blind: false },
          metrics: { latencyMs: 10 },
          latencyMs: 10,
          tokensIn: 1,
          tokensOut: 1,
          costMicro: 1,
          finishedAt: ts,
          bytes: 1500,
        });
      }
      await mongo.store.db.collection<JobDoc>(COLLECTIONS.jobs).insertMany(docs, { ordered: false });
    }
    // A fresh process streams the export, so its RSS baseline is not inflated by the inserts above. Its heap
    // is capped too: V8 would otherwise let garbage pile up before collecting, and an export held in memory
    // (over 100 MB of text) would make it fail outright.
    const { stdout } = await run(
      process.execPath,
      [
        '--max-old-space-size=96',
        '--import',
        'tsx',
        'test/export-rss.child.ts',
        mongo.dbName,
        pg.schema,
        ns!.id,
      ],
      {
        timeout: 360_000,
      },
    );
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as {
      lines: number;
      bytes: number;
      rssGrowth: number;
    };
    console.info(
      `export of ${r.lines} docs: ${r.bytes} bytes, RSS growth ${(r.rssGrowth / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(r.lines).toBe(total);
    // The export is larger than the bound, so holding it in memory would have failed the assertion.
    expect(r.bytes).toBeGreaterThan(100 * 1024 * 1024);
    expect(r.rssGrowth).toBeLessThan(100 * 1024 * 1024);
  });
});
