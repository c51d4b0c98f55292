// Pure rules of the records module: deterministic ids, document shapes built from events, key encoding,
// large-payload extraction, cursors, retention cut-offs and percentiles. No I/O.
import { createHash } from 'node:crypto';
import { AppError } from '../../platform/errors.js';
import { fromStorableMarker, isStorableText, STORABLE_MAX_DEPTH, UNSTORABLE_TEXT_ALL } from './storable.js';
import type {
  JobFinishedEvent,
  JobSubmittedEvent,
  LogType,
  RecordEvent,
  TerminalStatus,
} from './records.contracts.js';

export const COLLECTIONS = { jobs: 'record_jobs', logs: 'record_logs', qc: 'record_qc' } as const;
export type RecordCollection = (typeof COLLECTIONS)[keyof typeof COLLECTIONS];
export const BLOB_BUCKET = 'record_blobs';

/** Where a large value went: the blob id, the SHA-256 of its UTF-8 bytes and its size. */
export interface BlobRef {
  id: string;
  sha256: string;
  bytes: number;
}
export const BLOB_MARKER = '__blob__';

/** One event as stored (append-only; the trace and the logs). */
export interface LogDoc {
  _id: string;
  ns: string;
  jobId: string;
  type: RecordEvent['type'];
  logType: LogType;
  model: string | null;
  ts: Date;
  day: string;
  /** The event body without the envelope, keys encoded, large strings replaced by blob refs. */
  body: Record<string, unknown>;
  bytes: number;
}

/** One document per job, written once from its submitted and finished events. */
export interface JobDoc {
  _id: string;
  ns: string;
  ts: Date;
  day: string;
  model: string;
  apiKeyId: string | null;
  priority: string;
  blind: boolean;
  status: TerminalStatus;
  isError: 0 | 1;
  input: Record<string, unknown>;
  routing: {
    node: string | null;
    assignedAt: Date | null;
    attempts: number;
    /** The failed attempts before the last one (from a finished event that carries them). */
    history?: Array<{ attempt: number; nodeAddress: string | null; reason: unknown; cause?: string }>;
  };
  output: { text: unknown; tokensIn: number; tokensOut: number; finishReason: string | null };
  error: string | null;
  /** Why a job that did not succeed ended so (error code, last attempt's cause), when its producer said. */
  code?: string;
  cause?: string;
  flags: { failure: boolean; moderation: boolean; lowConfidence: boolean; blind: boolean };
  metrics: Record<string, unknown> & { latencyMs: number };
  latencyMs: number;
  tokensIn: number;
  tokensOut: number;
  costMicro: number;
  /** The price the job was charged at (config version and prices per 1,000 tokens), when its producer said. */
  price?: { version: number; inputMicroPer1kTokens: number; outputMicroPer1kTokens: number };
  finishedAt: Date;
  bytes: number;
}

export interface QcDoc {
  _id: string;
  ns: string;
  jobId: string;
  ts: Date;
  day: string;
  node: string;
  verdict: string;
  score: number;
  details: Record<string, unknown>;
  bytes: number;
}

/** The deterministic _id of an event: a redelivery, in any order, maps to the same document. */
export function eventDocId(e: RecordEvent): string {
  switch (e.type) {
    case 'job.submitted':
      return `${e.namespaceId}:${e.jobId}:submitted`;
    case 'job.assigned':
      return `${e.namespaceId}:${e.jobId}:assigned:${e.attempt}`;
    case 'job.fallback':
      return `${e.namespaceId}:${e.jobId}:fallback:${e.attempt}`;
    case 'job.finished':
      return `${e.namespaceId}:${e.jobId}:finished`;
    case 'log':
      return `${e.namespaceId}:${e.jobId}:log:${e.eventId}`;
    case 'qc.result':
      return `${e.namespaceId}:${e.jobId}:qc:${e.eventId}`;
  }
}
export const submittedIdOf = (ns: string, jobId: string): string => `${ns}:${jobId}:submitted`;
export const finishedIdOf = (ns: string, jobId: string): string => `${ns}:${jobId}:finished`;

export function logTypeOf(e: RecordEvent): LogType {
  switch (e.type) {
    case 'job.assigned':
    case 'job.fallback':
      return 'routing';
    case 'job.finished':
      return e.status === 'succeeded' ? 'execution' : 'error';
    case 'log':
      return e.logType;
    case 'qc.result':
      return 'qc';
    case 'job.submitted':
      return 'execution';
  }
}

export const dayOf = (d: Date): string => d.toISOString().slice(0, 10);

/**
 * User-supplied keys never reach MongoDB as operators or paths: '%', '.', a leading '$' or '_', U+0000 and
 * lone surrogates are escaped ('%00', '%uD800'); a leading '_' is escaped so that no user key can be one of
 * the markers this module writes (`__blob__`, `__text__`, `__array__`, `__deep__`).
 */
export function encodeKey(key: string): string {
  let k = key.replace(/%/g, '%25').replace(/\./g, '%2E');
  if (!isStorableText(k))
    k = k.replace(UNSTORABLE_TEXT_ALL, (c) =>
      c === '\u0000' ? '%00' : `%u${c.charCodeAt(0).toString(16).toUpperCase()}`,
    );
  if (k.startsWith('$')) k = `%24${k.slice(1)}`;
  else if (k.startsWith('_')) k = `%5F${k.slice(1)}`;
  return k;
}
export function decodeKey(key: string): string {
  return key.replace(
    /%(25|2E|24|5F|00)|%u([0-9A-F]{4})/g,
    (_, h: string | undefined, u: string | undefined) => String.fromCharCode(parseInt(h ?? u!, 16)),
  );
}

/**
 * Encodes every object key of a user-supplied value (deeply). Below STORABLE_MAX_DEPTH levels the value is
 * left as it is: toStorable turns such a subtree into JSON text, where keys need no escaping.
 */
export function encodeKeys(value: unknown, depth = 0): unknown {
  if (depth >= STORABLE_MAX_DEPTH) return value;
  if (Array.isArray(value)) return value.map((v) => encodeKeys(v, depth + 1));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[encodeKey(k)] = encodeKeys(v, depth + 1);
    return out;
  }
  return value;
}

/** Reverses encodeKeys and the storable encodings (storable.ts); blob markers are left as they are. */
export function decodeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decodeKeys);
  if (isPlainObject(value)) {
    if (BLOB_MARKER in value) return value;
    const marked = fromStorableMarker(value, decodeKeys);
    if (marked) return marked.value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[decodeKey(k)] = decodeKeys(v);
    return out;
  }
  return value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

export interface ExtractedBlob {
  ref: BlobRef;
  data: Buffer;
}

/**
 * Replaces every string longer than `thresholdBytes` (UTF-8) with `{ __blob__: ref }`; blob ids are
 * `<namespace>:<job>:<sha256>`, so a redelivered event yields the same ids, and a blob belongs to one job
 * (its retention follows that job's documents; no other job can still reference it).
 */
export function extractLargeStrings(
  idPrefix: string,
  value: unknown,
  thresholdBytes: number,
  blobs: ExtractedBlob[],
): unknown {
  if (typeof value === 'string') {
    if (value.length * 3 <= thresholdBytes) return value; // cheap bound before measuring
    const data = Buffer.from(value, 'utf8');
    if (data.length <= thresholdBytes) return value;
    const sha256 = createHash('sha256').update(data).digest('hex');
    const ref = { id: `${idPrefix}:${sha256}`, sha256, bytes: data.length };
    blobs.push({ ref, data });
    return { [BLOB_MARKER]: ref };
  }
  if (Array.isArray(value)) return value.map((v) => extractLargeStrings(idPrefix, v, thresholdBytes, blobs));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value))
      out[k] = extractLargeStrings(idPrefix, v, thresholdBytes, blobs);
    return out;
  }
  return value;
}

/** The stored body of an event: envelope fields removed, user keys encoded. */
export function bodyOf(e: RecordEvent): Record<string, unknown> {
  const { version: _v, namespaceId: _n, jobId: _j, at: _a, type: _t, model: _m, ...rest } = e;
  if (e.type === 'job.submitted') {
    const input = e.input;
    return { ...rest, input: { ...input, params: encodeKeys(input.params) } };
  }
  if (e.type === 'log' || e.type === 'qc.result') {
    const r = rest as Record<string, unknown>;
    return { ...r, data: encodeKeys(r.data), details: encodeKeys(r.details) };
  }
  if (e.type === 'job.finished') {
    const out: Record<string, unknown> = {
      ...rest,
      metrics: { ...e.metrics, gpu: encodeKeys(e.metrics.gpu) },
    };
    if (e.submitted)
      out.submitted = {
        ...e.submitted,
        input: { ...e.submitted.input, params: encodeKeys(e.submitted.input.params) },
      };
    return out;
  }
  return rest;
}

/** The job document follows from the two immutable events only, so its content never depends on order. */
export function buildJobDoc(submitted: LogDoc, finished: LogDoc): JobDoc {
  const s = submitted.body as Omit<JobSubmittedEvent, 'input'> & { input: Record<string, unknown> };
  const f = finished.body as unknown as Omit<JobFinishedEvent, 'output' | 'metrics'> & {
    output: { text: unknown; tokensIn: number; tokensOut: number; finishReason: string } | null;
    metrics: Record<string, unknown> & { latencyMs: number };
  };
  const output = f.output ?? { text: null, tokensIn: 0, tokensOut: 0, finishReason: null };
  return {
    _id: finished.jobId,
    ns: submitted.ns,
    ts: submitted.ts,
    day: submitted.day,
    model: submitted.model ?? '',
    apiKeyId: s.apiKeyId,
    priority: s.priority,
    blind: s.blind,
    status: f.status,
    isError: f.status === 'succeeded' ? 0 : 1,
    input: s.input,
    routing: {
      node: f.nodeAddress,
      assignedAt: f.assignedAt ? new Date(f.assignedAt) : null,
      attempts: f.attempts,
    },
    output: {
      text: output.text,
      tokensIn: output.tokensIn,
      tokensOut: output.tokensOut,
      finishReason: output.finishReason,
    },
    error: f.error,
    flags: {
      failure: f.status !== 'succeeded',
      moderation: f.flags.moderation,
      lowConfidence: f.flags.lowConfidence,
      blind: s.blind,
    },
    metrics: f.metrics,
    latencyMs: f.metrics.latencyMs,
    tokensIn: output.tokensIn,
    tokensOut: output.tokensOut,
    costMicro: Number(f.costMicro),
    ...(f.price ? { price: f.price } : {}),
    finishedAt: finished.ts,
    // Stored size of what this document holds (its two events' bodies, blobs included).
    bytes: submitted.bytes + finished.bytes,
  };
}

/** Cursor pagination over (ts desc, _id desc): an opaque token of the last row seen. */
export function encodeCursor(ts: Date, id: string): string {
  return Buffer.from(JSON.stringify([ts.getTime(), id])).toString('base64url');
}
export function decodeCursor(cursor: string): { ts: Date; id: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 2 ||
    !Number.isSafeInteger(parsed[0]) ||
    typeof parsed[1] !== 'string' ||
    parsed[1].length > 300
  )
    throw new AppError('invalid_cursor', 'cursor is not one this API returned');
  return { ts: new Date(parsed[0] as number), id: parsed[1] };
}

/** The oldest instant a namespace may still read or keep. */
export function retentionCutoff(now: Date, retentionDays: number): Date {
  return new Date(now.getTime() - retentionDays * 86_400_000);
}

/** Nearest-rank percentile over a histogram of (value, count) pairs sorted by value. */
export function percentileOfHistogram(hist: Array<[number, number]>, p: number): number | null {
  const total = hist.reduce((s, [, n]) => s + n, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (const [v, n] of hist) {
    seen += n;
    if (seen >= rank) return v;
  }
  return hist[hist.length - 1]![0];
}

/** Storage price of one day: ceil(bytes × price per GB-day / 10^9), in micro-credits. */
export function storageChargeMicro(bytes: number, priceMicroPerGbDay: bigint): bigint {
  if (bytes <= 0 || priceMicroPerGbDay <= 0n) return 0n;
  const num = BigInt(bytes) * priceMicroPerGbDay;
  return (num + 999_999_999n) / 1_000_000_000n;
}

const csvColumns = [
  'job_id',
  'ts',
  'model',
  'api_key_id',
  'status',
  'node',
  'attempts',
  'tokens_in',
  'tokens_out',
  'latency_ms',
  'cost_micro',
  'finish_reason',
] as const;
export const CSV_HEADER = `${csvColumns.join(',')}\n`;

function csvCell(value: unknown): string {
  // An encoded value (storable.ts, e.g. a finish reason holding U+0000) is shown decoded.
  const v =
    typeof value === 'object' && value !== null && !(value instanceof Date) ? decodeKeys(value) : value;
  const s =
    v === null || v === undefined
      ? ''
      : v instanceof Date
        ? v.toISOString()
        : typeof v === 'object'
          ? JSON.stringify(v)
          : String(v);
  // Quote when needed; a leading = + - @ is prefixed so spreadsheets do not run it as a formula.
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export function csvRowOf(d: JobDoc): string {
  return `${[
    d._id,
    d.ts,
    d.model,
    d.apiKeyId,
    d.status,
    d.routing.node,
    d.routing.attempts,
    d.tokensIn,
    d.tokensOut,
    d.latencyMs,
    d.costMicro,
    d.output.finishReason,
  ]
    .map(csvCell)
    .join(',')}\n`;
}

/** A stored job document as the API returns it: user keys decoded. */
export function presentJob(d: JobDoc): JobDoc {
  return {
    ...d,
    input: decodeKeys(d.input) as Record<string, unknown>,
    output: { ...d.output, text: decodeKeys(d.output.text) },
    ...(d.routing?.history ? { routing: decodeKeys(d.routing) as JobDoc['routing'] } : {}),
    error: decodeKeys(d.error) as string | null,
    metrics: decodeKeys(d.metrics) as JobDoc['metrics'],
  };
}
export function presentLog(d: LogDoc): LogDoc {
  return { ...d, body: decodeKeys(d.body) as Record<string, unknown> };
}
