// Pure rules of the records module: ids, key encoding, blob extraction, cursors, percentiles, prices, CSV.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../platform/errors.js';
import {
  BLOB_MARKER,
  csvRowOf,
  decodeCursor,
  decodeKeys,
  encodeCursor,
  encodeKey,
  encodeKeys,
  eventDocId,
  extractLargeStrings,
  percentileOfHistogram,
  retentionCutoff,
  storageChargeMicro,
  type ExtractedBlob,
  type JobDoc,
} from './record.js';
import { recordEvent, jobFilter } from './records.contracts.js';

const ns = '11111111-1111-4111-8111-111111111111';
const job = '22222222-2222-4222-8222-222222222222';

describe('key encoding', () => {
  it('escapes dots, leading $ and _, and the escape character, and decodes back', () => {
    const keys = ['a.b', '$where', '_id', '__blob__', 'x%2E', 'plain', '$', '.', '%'];
    for (const k of keys) {
      const e = encodeKey(k);
      expect(e.includes('.')).toBe(false);
      expect(e.startsWith('$') || e.startsWith('_')).toBe(false);
    }
    const value = Object.fromEntries(keys.map((k, i) => [k, { [k]: i }]));
    expect(decodeKeys(encodeKeys(value))).toEqual(value);
  });
});

describe('event ids', () => {
  it('are deterministic per event and distinct across kinds and attempts', () => {
    const base = { version: 1, namespaceId: ns, jobId: job, at: '2026-01-01T00:00:00Z' };
    const node = `0x${'a'.repeat(40)}`;
    const a1 = recordEvent.parse({ ...base, type: 'job.assigned', attempt: 1, nodeAddress: node });
    const a2 = recordEvent.parse({ ...base, type: 'job.assigned', attempt: 2, nodeAddress: node });
    const f1 = recordEvent.parse({
      ...base,
      type: 'job.fallback',
      attempt: 1,
      nodeAddress: node,
      reason: 'x',
    });
    expect(eventDocId(a1)).toBe(
      eventDocId(recordEvent.parse({ ...base, type: 'job.assigned', attempt: 1, nodeAddress: node })),
    );
    expect(new Set([eventDocId(a1), eventDocId(a2), eventDocId(f1)]).size).toBe(3);
    expect(eventDocId(a1).startsWith(`${ns}:${job}:`)).toBe(true);
  });

  it('refuse events of another version or with operator-shaped fields', () => {
    const base = {
      namespaceId: ns,
      jobId: job,
      at: '2026-01-01T00:00:00Z',
      type: 'job.assigned',
      attempt: 1,
    };
    expect(recordEvent.safeParse({ ...base, version: 2, nodeAddress: `0x${'a'.repeat(40)}` }).success).toBe(
      false,
    );
    expect(recordEvent.safeParse({ ...base, version: 1, nodeAddress: { $gt: '' } }).success).toBe(false);
    expect(jobFilter.safeParse({ model: { $gt: '' } }).success).toBe(false);
    expect(jobFilter.safeParse({ $where: '1' }).success).toBe(false);
  });
});

describe('large strings', () => {
  it('leave the value as content-addressed refs; equal content gives equal ids', () => {
    const big = 'b'.repeat(5000);
    const blobs: ExtractedBlob[] = [];
    const out = extractLargeStrings(
      `${ns}:${job}`,
      { a: big, b: [big, 'small'], c: 'small' },
      1024,
      blobs,
    ) as Record<string, unknown>;
    expect(out.c).toBe('small');
    const ref = (out.a as Record<string, { id: string; bytes: number }>)[BLOB_MARKER]!;
    expect(ref.bytes).toBe(5000);
    expect(ref.id.startsWith(`${ns}:${job}:`)).toBe(true);
    expect((out.b as unknown[])[0]).toEqual(out.a);
    expect(blobs).toHaveLength(2);
  });
});

describe('cursors', () => {
  it('round-trip and refuse anything else', () => {
    const ts = new Date('2026-02-03T04:05:06.789Z');
    expect(decodeCursor(encodeCursor(ts, 'abc'))).toEqual({ ts, id: 'abc' });
    for (const bad of [
      '',
      'x',
      Buffer.from('{"$gt":1}').toString('base64url'),
      Buffer.from('[1,{}]').toString('base64url'),
    ]) {
      let err: unknown;
      try {
        decodeCursor(bad);
      } catch (e) {
        err = e;
      }
      expect(isAppError(err, 'invalid_cursor')).toBe(true);
    }
  });
});

describe('percentiles from a histogram', () => {
  it('equal nearest-rank percentiles of the expanded values', () => {
    const values = [5, 1, 9, 9, 3, 7, 7, 7, 2, 10, 4];
    const hist = new Map<number, number>();
    for (const v of values) hist.set(v, (hist.get(v) ?? 0) + 1);
    const pairs = [...hist.entries()].sort((a, b) => a[0] - b[0]);
    const sorted = [...values].sort((a, b) => a - b);
    for (const p of [1, 50, 90, 95, 99, 100])
      expect(percentileOfHistogram(pairs, p)).toBe(sorted[Math.ceil((p / 100) * sorted.length) - 1]);
    expect(percentileOfHistogram([], 50)).toBeNull();
  });
});

describe('storage price and retention', () => {
  it('rounds the daily charge up to a whole micro-credit and is zero for nothing stored', () => {
    expect(storageChargeMicro(1_000_000_000, 20_000n)).toBe(20_000n);
    expect(storageChargeMicro(1, 20_000n)).toBe(1n);
    expect(storageChargeMicro(0, 20_000n)).toBe(0n);
    expect(retentionCutoff(new Date('2026-01-08T00:00:00Z'), 7)).toEqual(new Date('2026-01-01T00:00:00Z'));
  });
});

describe('CSV rows', () => {
  it('quote commas and quotes and defuse formulas', () => {
    const d = {
      _id: 'j',
      ts: new Date('2026-01-01T00:00:00Z'),
      model: 'a,"b"',
      apiKeyId: '=HYPERLINK()',
      status: 'succeeded',
      routing: { node: null, assignedAt: null, attempts: 1 },
      tokensIn: 1,
      tokensOut: 2,
      latencyMs: 3,
      costMicro: 4,
      output: { text: '', tokensIn: 1, tokensOut: 2, finishReason: 'stop' },
    } as unknown as JobDoc;
    expect(csvRowOf(d)).toBe(
      `j,2026-01-01T00:00:00.000Z,"a,""b""",'=HYPERLINK(),succeeded,,1,1,2,3,4,stop\n`,
    );
  });
});
