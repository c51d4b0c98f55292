// `npm run bench -- records`: events/s through the idempotent batched recorder beside a raw driver insertMany of
// the same documents (same batches, same concurrency, same indexes), and export throughput beside a raw cursor
// read, all in one run. Last line: BENCH records events_per_s=… raw_docs_per_s=… ratio=… export_docs_per_s=…
import type { Document } from 'mongodb';
import { createPgTestSchema, testLog } from '../test/harness.js';
import { createNamespaces } from '../test/factories.js';
import { createMongoTestDb } from '../test/mongo-harness.js';
import { jobEvents } from '../test/record-events.js';
import { systemClock } from '../src/platform/clock.js';
import {
  COLLECTIONS,
  GridFsBlobStore,
  RecorderService,
  RecordsQueryService,
  RecordsRepository,
  RetentionPolicies,
  type RecordEventInput,
} from '../src/modules/records/index.js';
import { benchLine, round } from './stats.js';

const JOBS_PER_ROUND = 1500; // × 4 events (submitted, assigned, log, finished) + 1 job document
const ROUNDS = 5;
const BATCH_EVENTS = 500;
const CONCURRENCY = 2;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function inParallel<T>(items: T[], n: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

function chunk<T>(xs: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size));
  return out;
}

export async function main(): Promise<void> {
  const deadline = Date.now() + 150_000;
  const pg = await createPgTestSchema({ poolSize: 2 });
  const recDb = await createMongoTestDb();
  const rawDb = await createMongoTestDb();
  try {
    const [ns] = await createNamespaces(pg.pool, 1);
    const repo = new RecordsRepository(recDb.store.db);
    const blobs = new GridFsBlobStore(recDb.store.db);
    const policies = new RetentionPolicies({ pool: pg.pool, clock: systemClock });
    const recorder = new RecorderService({
      repo,
      blobs,
      policies,
      log: testLog,
      options: { largePayloadBytes: 1 << 20, maxDocumentBytes: 1 << 22 },
    });
    const query = new RecordsQueryService({ repo, policies, blobs });
    const recRates: number[] = [];
    const rawRates: number[] = [];
    const ratios: number[] = [];
    let totalJobs = 0;
    const newEvents = (): RecordEventInput[] => {
      const events: RecordEventInput[] = [];
      for (let j = 0; j < JOBS_PER_ROUND; j += 1)
        events.push(...jobEvents({ namespaceId: ns!.id, at: new Date(Date.now() - 60_000 + j), logs: 1 }));
      return events;
    };
    // The documents the recorder wrote for these events, grouped per job (4 event documents + 1 job document).
    const readBack = async (events: RecordEventInput[]): Promise<Document[][]> => {
      const jobIds = [...new Set(events.map((e) => (e as { jobId: string }).jobId))];
      const perJob = new Map<string, Document[]>(jobIds.map((id) => [id, []]));
      for (const d of await recDb.store.db
        .collection(COLLECTIONS.logs)
        .find({ jobId: { $in: jobIds } })
        .toArray())
        perJob.get(d.jobId as string)!.push(d);
      for (const d of await recDb.store.db
        .collection(COLLECTIONS.jobs)
        .find({ _id: { $in: jobIds as never[] } })
        .toArray())
        perJob.get(String(d._id))!.push(d);
      return jobIds.map((id) => perJob.get(id)!);
    };
    const insertRaw = async (docs: Document[]) => {
      const logs = docs.filter((d) => 'logType' in d);
      const jobs = docs.filter((d) => !('logType' in d));
      await rawDb.store.db.collection(COLLECTIONS.logs).insertMany(logs, { ordered: false });
      if (jobs.length) await rawDb.store.db.collection(COLLECTIONS.jobs).insertMany(jobs, { ordered: false });
    };
    // Warm-up (not measured); its documents are the raw side's input for round 1.
    let previous = newEvents();
    await inParallel(chunk(previous, BATCH_EVENTS), CONCURRENCY, (b) => recorder.record(b));
    totalJobs += JOBS_PER_ROUND;
    for (let r = 0; r < ROUNDS && Date.now() < deadline; r += 1) {
      const events = newEvents();
      // Batches as a consumer would take them from the queue: a job's events may straddle two batches.
      const batches = chunk(events, BATCH_EVENTS);
      // The raw side inserts the previous round's recorder output (same documents, same shape, same batch
      // sizes: 125 jobs = 500 events = 625 documents), into another database with the same indexes.
      const rawBatches = chunk(await readBack(previous), BATCH_EVENTS / 4).map((jobs) => jobs.flat());
      let recMs = 0;
      let rawMs = 0;
      let rawDocs = 0;
      // Interleaved step by step, so that both sides see the same load from the shared machine.
      for (let i = 0; i < Math.max(batches.length, rawBatches.length); i += CONCURRENCY) {
        const t0 = performance.now();
        await Promise.all(batches.slice(i, i + CONCURRENCY).map((b) => recorder.record(b)));
        const t1 = performance.now();
        const raw = rawBatches.slice(i, i + CONCURRENCY);
        await Promise.all(raw.map(insertRaw));
        rawMs += performance.now() - t1;
        recMs += t1 - t0;
        rawDocs += raw.reduce((n, b) => n + b.length, 0);
      }
      totalJobs += JOBS_PER_ROUND;
      previous = events;
      const recRate = events.length / (recMs / 1000);
      const rawRate = rawDocs / (rawMs / 1000);
      recRates.push(recRate);
      rawRates.push(rawRate);
      ratios.push(recRate / rawRate);
      console.log(
        `round ${r + 1}: recorder ${events.length} events in ${round(recMs / 1000)} s = ${Math.round(recRate)} events/s` +
          ` | raw insertMany ${rawDocs} docs in ${round(rawMs / 1000)} s = ${Math.round(rawRate)} docs/s`,
      );
    }

    // Export: the streamed JSONL export beside a raw cursor read of the same documents.
    const t2 = performance.now();
    let exported = 0;
    for await (const c of await query.exportJobs(ns!.id, {}, 'jsonl'))
      for (let k = String(c).indexOf('\n'); k !== -1; k = String(c).indexOf('\n', k + 1)) exported += 1;
    const exportRate = exported / ((performance.now() - t2) / 1000);
    const t3 = performance.now();
    let read = 0;
    for await (const _ of recDb.store.db.collection(COLLECTIONS.jobs).find({ ns: ns!.id }).batchSize(1000))
      read += 1;
    const readRate = read / ((performance.now() - t3) / 1000);
    if (exported !== totalJobs || read !== totalJobs)
      throw new Error(`export saw ${exported}, read ${read}, expected ${totalJobs}`);

    const ev = median(recRates);
    const raw = median(rawRates);
    console.log(
      `recorder: ${Math.round(ev)} events/s (median of ${recRates.length} rounds; 4 events + 1 job document per job, batches of ${BATCH_EVENTS}, ${CONCURRENCY} concurrent)`,
    );
    console.log(
      `raw ceiling: ${Math.round(raw)} docs/s (driver insertMany of the same documents, unordered, same batches and concurrency)`,
    );
    console.log(
      'ratio: median over rounds of recorder events/s ÷ raw docs/s (the recorder writes 1.25 documents per event)',
    );
    console.log(
      `export: ${Math.round(exportRate)} docs/s JSONL streamed | raw cursor read ${Math.round(readRate)} docs/s (${exported} job documents)`,
    );
    console.log(
      benchLine('records', {
        events_per_s: Math.round(ev),
        raw_docs_per_s: Math.round(raw),
        ratio: round(median(ratios)),
        export_docs_per_s: Math.round(exportRate),
      }),
    );
  } finally {
    await Promise.all([recDb.drop(), rawDb.drop(), pg.drop()]);
  }
}
