// Namespace-scoped reads: filtered lists with cursor pagination, a job's full trace, dashboard/SLA aggregates
// and streamed CSV/JSONL exports. Nothing past the namespace's retention is ever returned.
import { Readable } from 'node:stream';
import type { Filter } from 'mongodb';
import { isUuid } from '../../config/vocabulary.js';
import { AppError } from '../../platform/errors.js';
import type { BlobStore } from './blob-store.js';
import {
  CSV_HEADER,
  csvRowOf,
  decodeCursor,
  encodeCursor,
  percentileOfHistogram,
  presentJob,
  presentLog,
  type JobDoc,
  type LogDoc,
  type QcDoc,
} from './record.js';
import {
  aggregateRequest,
  jobFilter,
  logFilter,
  pageRequest,
  type AggregateRequest,
  type JobFilter,
  type LogFilter,
  type PageRequest,
} from './records.contracts.js';
import type { RecordsRepository } from './records.repository.js';
import type { RetentionPolicies } from './retention-policy.js';
import { toStorableString } from './storable.js';

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface AggregateRow {
  key: string | null;
  day: string;
  requests: number;
  errors: number;
  errorRate: number;
  latencyP50: number | null;
  latencyP95: number | null;
  latencyP99: number | null;
  tokensIn: number;
  tokensOut: number;
  creditsMicro: number;
}

export interface JobTrace {
  job: JobDoc | null;
  events: LogDoc[];
  qc: QcDoc[];
}

function parse<T>(
  schema: {
    safeParse(
      v: unknown,
    ):
      | { success: true; data: T }
      | { success: false; error: { issues: Array<{ path: PropertyKey[]; message: string }> } };
  },
  value: unknown,
  what: string,
): T {
  const r = schema.safeParse(value ?? {});
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.map(String).join('.') || what}: ${i.message}`).join('; ');
    throw new AppError('invalid_filter', `invalid ${what}: ${msg}`);
  }
  return r.data;
}

function requireNamespace(namespaceId: string): string {
  if (!isUuid(namespaceId)) throw new AppError('invalid_request', 'namespaceId must be a UUID');
  return namespaceId;
}

/** Time window: [max(from, retention cutoff), to). */
function timeRange(cutoff: Date, from?: Date, to?: Date): { $gte: Date; $lt?: Date } {
  const gte = from && from > cutoff ? from : cutoff;
  return to ? { $gte: gte, $lt: to } : { $gte: gte };
}

function afterCursor(cursor: string | undefined): Filter<{ ts: Date; _id: string }> {
  if (!cursor) return {};
  const c = decodeCursor(cursor);
  return { $or: [{ ts: { $lt: c.ts } }, { ts: { $eq: c.ts }, _id: { $lt: c.id } }] };
}

export class RecordsQueryService {
  constructor(
    private readonly deps: { repo: RecordsRepository; policies: RetentionPolicies; blobs: BlobStore },
  ) {}

  private async jobMatch(namespaceId: string, f: JobFilter): Promise<Filter<JobDoc>> {
    const filter = parse(jobFilter, f, 'job filter');
    const cutoff = await this.deps.policies.cutoff(namespaceId);
    // Every value is matched literally with $eq: validated scalars, never operators.
    const m: Filter<JobDoc> = { ts: timeRange(cutoff, filter.from, filter.to) };
    // A model is stored with U+0000 and lone surrogates written as JSON escapes (storable.ts): match it so.
    if (filter.model !== undefined) m.model = { $eq: toStorableString(filter.model) };
    if (filter.status !== undefined) m.status = { $eq: filter.status };
    if (filter.apiKeyId !== undefined) m.apiKeyId = { $eq: filter.apiKeyId };
    if (filter.blind !== undefined) m.blind = { $eq: filter.blind };
    return m;
  }

  async listJobs(namespaceId: string, filter: JobFilter = {}, page: PageRequest = {}): Promise<Page<JobDoc>> {
    requireNamespace(namespaceId);
    const p = parse(pageRequest, page, 'page');
    const m = await this.jobMatch(namespaceId, filter);
    const rows = await this.deps.repo.findJobs(
      namespaceId,
      { ...m, ...(afterCursor(p.cursor) as Filter<JobDoc>) },
      p.limit + 1,
    );
    return pageOf(rows, p.limit, presentJob);
  }

  async listLogs(namespaceId: string, filter: LogFilter = {}, page: PageRequest = {}): Promise<Page<LogDoc>> {
    requireNamespace(namespaceId);
    const p = parse(pageRequest, page, 'page');
    const f = parse(logFilter, filter, 'log filter');
    const cutoff = await this.deps.policies.cutoff(namespaceId);
    const m: Filter<LogDoc> = { ts: timeRange(cutoff, f.from, f.to) };
    if (f.logType !== undefined) m.logType = { $eq: f.logType };
    if (f.jobId !== undefined) m.jobId = { $eq: f.jobId };
    if (f.model !== undefined) m.model = { $eq: toStorableString(f.model) };
    const rows = await this.deps.repo.findLogs(
      namespaceId,
      { ...m, ...(afterCursor(p.cursor) as Filter<LogDoc>) },
      p.limit + 1,
    );
    return pageOf(rows, p.limit, presentLog);
  }

  /** The job document, every event (routing history, logs) in time order and its QC results. */
  async getTrace(namespaceId: string, jobId: string): Promise<JobTrace> {
    requireNamespace(namespaceId);
    if (!isUuid(jobId)) throw new AppError('invalid_filter', 'jobId must be a UUID');
    const cutoff = await this.deps.policies.cutoff(namespaceId);
    const [job, events, qc] = await Promise.all([
      this.deps.repo.findJob(namespaceId, jobId, cutoff),
      this.deps.repo.findJobEvents(namespaceId, jobId, cutoff),
      this.deps.repo.findQcResults(namespaceId, jobId, cutoff),
    ]);
    if (!job && events.length === 0)
      throw new AppError('not_found', `no job ${jobId} in namespace ${namespaceId}`);
    return { job: job ? presentJob(job) : null, events: events.map(presentLog), qc };
  }

  async readBlob(namespaceId: string, blobId: string): Promise<Buffer> {
    requireNamespace(namespaceId);
    return this.deps.blobs.get(namespaceId, blobId, await this.deps.policies.cutoff(namespaceId));
  }

  /**
   * Per key (model or API key) and day: requests, errors, latency percentiles (succeeded jobs, exact, from a
   * histogram grouped by latency), tokens and credits. One accumulator per $group (FerretDB 1.24).
   */
  async aggregate(namespaceId: string, req: AggregateRequest): Promise<AggregateRow[]> {
    requireNamespace(namespaceId);
    const r = parse(aggregateRequest, req, 'aggregate request');
    const m = await this.jobMatch(namespaceId, { from: r.from, to: r.to, model: r.model });
    const keyField = `$${r.by}`;
    const g = { k: keyField, d: '$day' };
    const [hist, tokensIn, tokensOut, credits] = await Promise.all([
      this.deps.repo.groupSum(namespaceId, m, { ...g, e: '$isError', l: '$latencyMs' }, 1),
      this.deps.repo.groupSum(namespaceId, m, g, '$tokensIn'),
      this.deps.repo.groupSum(namespaceId, m, g, '$tokensOut'),
      this.deps.repo.groupSum(namespaceId, m, g, '$costMicro'),
    ]);
    const rows = new Map<string, AggregateRow & { hist: Array<[number, number]> }>();
    const rowOf = (id: Record<string, unknown>) => {
      const key = (id.k ?? null) as string | null;
      const day = String(id.d);
      const name = JSON.stringify([key, day]);
      let row = rows.get(name);
      if (!row) {
        row = {
          key,
          day,
          requests: 0,
          errors: 0,
          errorRate: 0,
          latencyP50: null,
          latencyP95: null,
          latencyP99: null,
          tokensIn: 0,
          tokensOut: 0,
          creditsMicro: 0,
          hist: [],
        };
        rows.set(name, row);
      }
      return row;
    };
    for (const h of hist) {
      const row = rowOf(h._id);
      row.requests += h.v;
      if (h._id.e === 1) row.errors += h.v;
      else row.hist.push([Number(h._id.l), h.v]);
    }
    for (const t of tokensIn) rowOf(t._id).tokensIn = Number(t.v);
    for (const t of tokensOut) rowOf(t._id).tokensOut = Number(t.v);
    for (const c of credits) rowOf(c._id).creditsMicro = Number(c.v);
    return [...rows.values()]
      .map(({ hist: h, ...row }) => {
        h.sort((a, b) => a[0] - b[0]);
        return {
          ...row,
          errorRate: row.requests === 0 ? 0 : row.errors / row.requests,
          latencyP50: percentileOfHistogram(h, 50),
          latencyP95: percentileOfHistogram(h, 95),
          latencyP99: percentileOfHistogram(h, 99),
        };
      })
      .sort((a, b) =>
        a.day === b.day ? String(a.key).localeCompare(String(b.key)) : a.day.localeCompare(b.day),
      );
  }

  /** Streams the filtered jobs as CSV or JSONL in constant memory (a server cursor read in batches). */
  async exportJobs(namespaceId: string, filter: JobFilter, format: 'csv' | 'jsonl'): Promise<Readable> {
    requireNamespace(namespaceId);
    if (format !== 'csv' && format !== 'jsonl')
      throw new AppError('invalid_request', 'format must be csv or jsonl');
    const m = await this.jobMatch(namespaceId, filter);
    const cursor = this.deps.repo.jobs
      .find({ ...m, ns: { $eq: namespaceId } })
      .sort({ ts: -1, _id: -1 })
      .batchSize(1000);
    async function* lines(): AsyncGenerator<string> {
      try {
        if (format === 'csv') yield CSV_HEADER;
        let buf = '';
        for await (const doc of cursor) {
          buf += format === 'csv' ? csvRowOf(doc) : `${JSON.stringify(presentJob(doc))}\n`;
          if (buf.length >= 64 * 1024) {
            yield buf;
            buf = '';
          }
        }
        if (buf) yield buf;
      } finally {
        await cursor.close();
      }
    }
    return Readable.from(lines(), { objectMode: false, highWaterMark: 4 });
  }
}

function pageOf<T extends { ts: Date; _id: string }>(
  rows: T[],
  limit: number,
  present: (d: T) => T,
): Page<T> {
  const more = rows.length > limit;
  const items = more ? rows.slice(0, limit) : rows;
  const last = items[items.length - 1];
  return { items: items.map(present), nextCursor: more && last ? encodeCursor(last.ts, last._id) : null };
}
