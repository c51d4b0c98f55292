// The idempotent recorder: takes batches of job events. A finished event carrying its submission (the normal
// path) becomes the job's one document at once (plus an error log when the job failed); every other event is an
// append-only document with a deterministic _id (a redelivery is a no-op), and a job's document is written once
// both its separate submitted and finished events exist, whatever order they arrive in.
import { BSON } from 'mongodb';
import { AppError, isAppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import {
  bodyOf,
  buildJobDoc,
  dayOf,
  encodeKey,
  eventDocId,
  extractLargeStrings,
  finishedIdOf,
  logTypeOf,
  submittedIdOf,
  type ExtractedBlob,
  type JobDoc,
  type LogDoc,
  type QcDoc,
} from './record.js';
import { compactJobDoc } from './record-compact.js';
import { recordEvent, type RecordEvent } from './records.contracts.js';
import type { RecordsRepository } from './records.repository.js';
import type { BlobStore } from './blob-store.js';
import type { RetentionPolicies } from './retention-policy.js';
import { toStorable, toStorableString } from './storable.js';

export interface RecorderOptions {
  largePayloadBytes: number;
  maxDocumentBytes: number;
}

export type RecordOutcome =
  | { status: 'recorded' | 'duplicate'; id: string }
  | { status: 'expired'; id: string }
  | { status: 'rejected'; error: AppError };

interface Prepared {
  index: number;
  event: RecordEvent;
  doc: LogDoc;
  blobs: ExtractedBlob[];
}

export class RecorderService {
  private readonly log: Logger;

  constructor(
    private readonly deps: {
      repo: RecordsRepository;
      blobs: BlobStore;
      policies: RetentionPolicies;
      log: Logger;
      options: RecorderOptions;
    },
  ) {
    this.log = deps.log.child({ component: 'recorder' });
  }

  /** Resolves when the records store answers. */
  ping(): Promise<void> {
    return this.deps.repo.ping();
  }

  /**
   * Records a batch; one outcome per input, in order. A rejected event (bad contract, too large) writes
   * nothing; store errors throw for the whole batch, which is then safe to redeliver as it is.
   */
  async record(input: unknown[]): Promise<RecordOutcome[]> {
    const outcomes: RecordOutcome[] = new Array(input.length);
    const prepared: Prepared[] = [];
    const cutoffs = new Map<string, Date>();
    for (let i = 0; i < input.length; i += 1) {
      const parsed = recordEvent.safeParse(input[i]);
      if (!parsed.success) {
        const msg = parsed.error.issues
          .map((x) => `${x.path.join('.') || '(event)'}: ${x.message}`)
          .join('; ');
        outcomes[i] = { status: 'rejected', error: new AppError('invalid_request', `bad job event: ${msg}`) };
        continue;
      }
      const event = parsed.data;
      let cutoff = cutoffs.get(event.namespaceId);
      if (!cutoff) {
        try {
          cutoff = await this.deps.policies.cutoff(event.namespaceId);
        } catch (err) {
          // An unknown namespace is this event's fault; a store outage fails the batch (redelivered later).
          if (!isAppError(err, 'namespace_not_found')) throw err;
          outcomes[i] = { status: 'rejected', error: err };
          continue;
        }
        cutoffs.set(event.namespaceId, cutoff);
      }
      const id = eventDocId(event);
      const ts = new Date(event.at);
      // Past its namespace's retention already (e.g. redelivered after the sweep): never stored again.
      if (ts < cutoff) {
        outcomes[i] = { status: 'expired', id };
        continue;
      }
      try {
        prepared.push({ index: i, event, ...this.prepare(event, id, ts) });
      } catch (err) {
        if (!isAppError(err, 'payload_too_large')) throw err;
        outcomes[i] = { status: 'rejected', error: err };
      }
    }
    if (prepared.length === 0) return outcomes;

    // Blobs first: a document never references a blob that is not stored.
    for (const p of prepared)
      for (const b of p.blobs) await this.deps.blobs.put(p.doc.ns, p.doc.jobId, b.ref, b.data, p.doc.ts);

    // The normal path: one job document from one event, no lookup, no log document unless it failed.
    const compact: Array<{ p: Prepared; job: JobDoc }> = [];
    const logged: Prepared[] = [];
    const logs: LogDoc[] = [];
    for (const p of prepared) {
      if (p.event.type === 'job.finished' && p.event.submitted) {
        const c = compactJobDoc(p.doc);
        compact.push({ p, job: c.job });
        if (c.errorLog) logs.push({ ...c.errorLog, bytes: BSON.calculateObjectSize(c.errorLog) });
      } else {
        logged.push(p);
        logs.push(p.doc);
      }
    }
    // Error logs first: a job document is never there without the log a failure keeps (a redelivery adds it).
    const written = await this.deps.repo.insertEvents(logs);
    logged.forEach((p, k) => {
      outcomes[p.index] = { status: written.duplicates.has(k) ? 'duplicate' : 'recorded', id: p.doc._id };
    });
    if (compact.length > 0) {
      const jobs = await this.deps.repo.insertJobs(compact.map((c) => c.job));
      compact.forEach(({ p }, k) => {
        outcomes[p.index] = { status: jobs.duplicates.has(k) ? 'duplicate' : 'recorded', id: p.doc._id };
      });
    }
    const qc = logged.filter((p) => p.event.type === 'qc.result').map((p) => qcDocOf(p));
    if (qc.length > 0) await this.deps.repo.insertQcResults(qc);
    await this.materializeJobs(logged);
    return outcomes;
  }

  private prepare(event: RecordEvent, id: string, ts: Date): { doc: LogDoc; blobs: ExtractedBlob[] } {
    const blobs: ExtractedBlob[] = [];
    // What the stores cannot hold (U+0000, lone surrogates, nested arrays, depth) is encoded first, so any
    // event that passed its contract is storable (storable.ts); large strings then move out to blobs.
    const body = extractLargeStrings(
      `${event.namespaceId}:${event.jobId}`,
      toStorable(bodyOf(event), encodeKey),
      this.deps.options.largePayloadBytes,
      blobs,
    ) as Record<string, unknown>;
    const doc: LogDoc = {
      _id: id,
      ns: event.namespaceId,
      jobId: event.jobId,
      type: event.type,
      logType: logTypeOf(event),
      model: event.model === undefined ? null : toStorableString(event.model),
      ts,
      day: dayOf(ts),
      body,
      bytes: 0,
    };
    const size = BSON.calculateObjectSize(doc);
    if (size > this.deps.options.maxDocumentBytes) {
      throw new AppError(
        'payload_too_large',
        `job event ${id} is ${size} bytes after large payloads were moved out; the limit is ${this.deps.options.maxDocumentBytes}`,
        { bytes: size, limit: this.deps.options.maxDocumentBytes },
      );
    }
    doc.bytes = size + blobs.reduce((s, b) => s + b.data.length, 0);
    return { doc, blobs };
  }

  /** Writes the job document of every job in the batch whose submitted and finished events both exist. */
  private async materializeJobs(prepared: Prepared[]): Promise<void> {
    const inBatch = new Map<string, LogDoc>();
    const wanted = new Map<string, { ns: string; jobId: string }>();
    for (const p of prepared) {
      if (p.event.type !== 'job.submitted' && p.event.type !== 'job.finished') continue;
      inBatch.set(p.doc._id, p.doc);
      wanted.set(`${p.doc.ns}:${p.doc.jobId}`, { ns: p.doc.ns, jobId: p.doc.jobId });
    }
    if (wanted.size === 0) return;
    const missing: string[] = [];
    for (const { ns, jobId } of wanted.values()) {
      for (const id of [submittedIdOf(ns, jobId), finishedIdOf(ns, jobId)])
        if (!inBatch.has(id)) missing.push(id);
    }
    // Each event was stored before this read, so of two recorders holding the two halves at least one sees both.
    const found = new Map([
      ...inBatch,
      ...(await this.deps.repo.findEventsByIds(missing)).map((d) => [d._id, d] as const),
    ]);
    const jobs: JobDoc[] = [];
    for (const { ns, jobId } of wanted.values()) {
      const s = found.get(submittedIdOf(ns, jobId));
      const f = found.get(finishedIdOf(ns, jobId));
      if (s && f) jobs.push(buildJobDoc(s, f));
    }
    const r = await this.deps.repo.insertJobs(jobs);
    this.log.debug({ jobs: jobs.length, already: r.duplicates.size }, 'job documents written');
  }
}

function qcDocOf(p: Prepared): QcDoc {
  const e = p.event as Extract<RecordEvent, { type: 'qc.result' }>;
  return {
    _id: p.doc._id,
    ns: p.doc.ns,
    jobId: p.doc.jobId,
    ts: p.doc.ts,
    day: p.doc.day,
    node: e.nodeAddress,
    verdict: e.verdict,
    score: e.score,
    details: (p.doc.body.details ?? {}) as Record<string, unknown>,
    bytes: p.doc.bytes,
  };
}
