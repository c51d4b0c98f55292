// Unit tests of the byte-level CBOR helpers and the canonical row codec.
import * as dagCbor from '@ipld/dag-cbor';
import { describe, expect, it } from 'vitest';
import { encodeArrayOfEncoded, firstText, splitArray, CborFormatError } from './cbor-items.js';
import { encodeRowFast } from '../canonical/index.js';
import { encodeRow, restoreParams, rowValues } from '../canonical/index.js';
import { jobRollupsSpec } from '../canonical/index.js';

describe('CBOR items', () => {
  it('an array built from encoded items equals dag-cbor encoding of the array, for several header widths', () => {
    for (const n of [0, 1, 23, 24, 255, 256, 70_000]) {
      const items = Array.from({ length: n }, (_, i) => [i, `s${i}`, null, BigInt(i) * 10_000_000_000n]);
      const encoded = items.map((x) => dagCbor.encode(x));
      const built = encodeArrayOfEncoded(encoded);
      expect(Buffer.from(built).equals(Buffer.from(dagCbor.encode(items))), `n=${n}`).toBe(true);
      const split = splitArray(built);
      expect(split.length).toBe(n);
      if (n > 0) expect(Buffer.from(split[n - 1]!)).toEqual(Buffer.from(encoded[n - 1]!));
    }
  });

  it('splits nested maps, byte strings, tags and floats; refuses truncated or trailing bytes', () => {
    const v = [{ a: [1, { b: new Uint8Array([1, 2, 3]) }] }, 1.5, -7, true, 'x'.repeat(300)];
    const b = dagCbor.encode(v);
    expect(splitArray(b).map((x) => dagCbor.decode(x))).toEqual(v);
    expect(() => splitArray(b.subarray(0, b.length - 1))).toThrow(CborFormatError);
    expect(() => splitArray(Buffer.concat([b, Buffer.from([0])]))).toThrow(CborFormatError);
  });

  it('encodes a rollup row canonically and gives back restore parameters', () => {
    const row = {
      c0: '2026-01-02',
      c1: '00000000-0000-4000-8000-000000000001',
      c2: 'm',
      c3: '',
      c4: 'succeeded',
      c5: 3n,
      c6: 10n,
      c7: 20n,
      c8: 12_345_678_901_234n,
      c9: 3n,
      c10: 900n,
      c11: '{1,2,0,0,0,0,0,0,0}',
    };
    const values = rowValues(jobRollupsSpec, row);
    expect(values[11]).toEqual([1n, 2n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]);
    const decoded = dagCbor.decode(encodeRow(values)) as unknown[];
    const params = restoreParams(jobRollupsSpec, [decoded]);
    expect(params[8]).toEqual(['12345678901234']);
    expect(params[11]).toEqual(['{1,2,0,0,0,0,0,0,0}']);
  });
});

describe('row encoder', () => {
  it('is byte-for-byte what @ipld/dag-cbor encodes, for every value kind and integer width', () => {
    const ints = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER];
    const rows = [
      [null, true, false, '', 'héllo ✓', new Uint8Array([]), new Uint8Array(300).fill(7)],
      [...ints, ...ints.slice(0, -1).map((n) => -n - 1), -Number.MAX_SAFE_INTEGER],
      [...ints.map(BigInt), 2n ** 64n - 1n, -(2n ** 64n), 2n ** 40n, -(2n ** 40n)],
      [[1n, [2n, ['x', null]]], 'x'.repeat(70_000)],
    ];
    for (const r of rows)
      expect(Buffer.from(encodeRowFast(r)).toString('hex')).toBe(
        Buffer.from(dagCbor.encode(r)).toString('hex'),
      );
    expect(() => encodeRowFast([1.5])).toThrow(TypeError);
    expect(() => encodeRowFast([2n ** 64n])).toThrow(RangeError);
  });

  it('reads the first text item of a row without decoding it', () => {
    expect(firstText(encodeRowFast(['2026-01-02', 5n, 'x']))).toBe('2026-01-02');
    expect(() => firstText(encodeRowFast([5n]))).toThrow(CborFormatError);
  });
});

describe('scanRows and countItems', () => {
  it('read the leading values of every row exactly as dag-cbor decodes them, wide and negative integers included', async () => {
    const { scanRows, countItems } = await import('./cbor-items.js');
    const rows: unknown[][] = [
      [1n, 'topup', 'ns', null, null, 1000n, 'k', null, 5n],
      [2n ** 60n, 'settle', null, '0xabc', 'job', -(2n ** 40n), null],
      [0, '', true, false, new Uint8Array([1, 2]), -1, [1, 2]],
      [4294967296n, 'é', null],
      [2n ** 53n - 1n, -(2n ** 53n) - 5n, 2n ** 64n - 1n, 'x'.repeat(300), null, { a: [1] }],
      [],
    ];
    const chunk = dagCbor.encode(rows);
    const want = (dagCbor.decode(chunk) as unknown[][]).map((r) =>
      Array.from({ length: 5 }, (_, i) => r[i]).map((v) => (typeof v === 'number' ? BigInt(v) : v)),
    );
    const got: unknown[][] = [];
    const n = scanRows(chunk, 5, (v) => got.push(v.map((x) => (typeof x === 'number' ? BigInt(x) : x))));
    expect(n).toBe(rows.length);
    expect(got).toEqual(want);
    expect(countItems(chunk)).toBe(rows.length);
    expect(() => scanRows(dagCbor.encode([[[1], 2]]), 1, () => undefined)).toThrow(/not a scalar/);
    expect(() => scanRows(dagCbor.encode([1]), 1, () => undefined)).toThrow(/row 0 is not an array/);
    expect(() => scanRows(chunk.subarray(0, chunk.length - 1), 5, () => undefined)).toThrow(CborFormatError);
    expect(() => scanRows(Buffer.concat([chunk, Buffer.from([0])]), 5, () => undefined)).toThrow(
      /trailing bytes/,
    );
    expect(() => countItems(Buffer.concat([chunk, Buffer.from([0])]))).toThrow(/trailing bytes/);
    expect(() => countItems(dagCbor.encode([[1], 2]))).toThrow(/row 1 is not an array/);
  });
});

describe('Sum', () => {
  it('stays exact past 2^53 and back, as a bigint sum would', async () => {
    const { Sum } = await import('./snapshot-deep.js');
    const s = new Sum();
    let want = 0n;
    const xs = [2 ** 52, 2 ** 52, 2 ** 52, 7, -(2 ** 53), 3n * 2n ** 70n, -1, -(3n * 2n ** 70n), 2 ** 53 - 1];
    for (const x of xs) {
      s.add(x);
      want += BigInt(x);
      expect(s.value()).toBe(want);
    }
    s.sub(2 ** 53 - 1);
    expect(s.value()).toBe(want - BigInt(2 ** 53 - 1));
  });
});
