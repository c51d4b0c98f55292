// The storable encoding (storable.ts): what MongoDB/FerretDB cannot hold is encoded, never dropped, and reads
// back as it was asked.
import { describe, expect, it } from 'vitest';
import { decodeKeys, encodeKey, encodeKeys, presentJob, type JobDoc } from './record.js';
import { isStorableText, jsonText, STORABLE_MAX_DEPTH, toStorable, toStorableString } from './storable.js';

const encode = (v: unknown) => toStorable(encodeKeys(v), encodeKey) as Record<string, unknown>;

/** Every string and key of a stored value is storable; no array sits directly in an array; depth is bounded. */
function assertStorable(v: unknown, depth = 0): void {
  expect(depth).toBeLessThanOrEqual(STORABLE_MAX_DEPTH + 1);
  if (typeof v === 'string') expect(isStorableText(v)).toBe(true);
  else if (Array.isArray(v))
    for (const x of v) {
      expect(Array.isArray(x)).toBe(false);
      assertStorable(x, depth + 1);
    }
  else if (typeof v === 'object' && v !== null)
    for (const [k, x] of Object.entries(v)) {
      expect(isStorableText(k) && !k.includes('.') && !k.startsWith('$')).toBe(true);
      assertStorable(x, depth + 1);
    }
}

describe('storable encoding', () => {
  it('encodes U+0000 and lone surrogates in strings and reads them back exactly', () => {
    const value = { a: 'x\u0000y', b: 'hi\ud800', c: '\udc00lo', d: 'ok 😀', e: ['\u0000'] };
    const stored = encode(value);
    assertStorable(stored);
    expect(stored).toMatchObject({ a: { __text__: '"x\\u0000y"' }, d: 'ok 😀' });
    expect(decodeKeys(stored)).toEqual(value);
  });

  it('wraps arrays inside arrays (FerretDB refuses them) and reads them back', () => {
    const value = { tools: [[1, 2], [[3]], { x: [[4]] }], plain: [1, 2] };
    const stored = encode(value);
    assertStorable(stored);
    expect(stored).toMatchObject({
      tools: [{ __array__: [1, 2] }, { __array__: [{ __array__: [3] }] }, { x: [{ __array__: [4] }] }],
    });
    expect(decodeKeys(stored)).toEqual(value);
  });

  it('turns nesting past the depth limit into JSON text, even 5,000 levels deep', () => {
    let deep: unknown = 'bottom\u0000';
    for (let i = 0; i < 5000; i += 1) deep = i % 2 ? { k: deep } : [deep];
    const stored = encode({ deep }) as Record<string, unknown>;
    assertStorable(stored);
    const text = JSON.stringify(stored);
    expect(text).toContain('__deep__');
    // Nothing is lost: the JSON text holds the rest of the tree, bottom value included.
    expect(text).toContain('bottom\\\\u0000');
  });

  it('writes JSON text without recursion at any depth, equal to JSON.stringify where that works', () => {
    const sample = { a: [1, 'x', null, true, { b: undefined, c: [{}], d: new Date(0) }], e: 'q"\u0000' };
    expect(jsonText(sample)).toBe(JSON.stringify(sample));
    let deep: unknown = 1;
    for (let i = 0; i < 20_000; i += 1) deep = { k: [deep] };
    const text = jsonText(deep);
    expect(text.length).toBe(20_000 * 8 + 1);
    expect(JSON.parse(text)).toBeTypeOf('object');
  });

  it('escapes keys with dots, a leading $ or _, U+0000 and lone surrogates, and decodes them', () => {
    const value = { 'a.b': 1, $where: 2, _id: 3, 'n\u0000ul': 4, ['s\ud800']: 5, __text__: 6, '%u0041': 7 };
    const stored = encode(value);
    assertStorable(stored);
    expect(Object.keys(stored as object).some((k) => k.startsWith('_'))).toBe(false);
    expect(decodeKeys(stored)).toEqual(value);
  });

  it('keeps a string field a string, with JSON escapes for what cannot be stored', () => {
    expect(toStorableString('llama')).toBe('llama');
    expect(toStorableString('lla\u0000ma')).toBe('lla\\u0000ma');
  });

  it('a job document reads back decoded (input, output text, error)', () => {
    const doc = {
      input: encode({ prompt: 'a\u0000' }),
      output: { text: encode({ t: 'b\u0000' }).t, tokensIn: 0, tokensOut: 0, finishReason: null },
      error: encode({ e: 'c\ud800' }).e,
      metrics: { latencyMs: 1 },
    } as unknown as JobDoc;
    const shown = presentJob(doc);
    expect(shown.input).toEqual({ prompt: 'a\u0000' });
    expect(shown.output.text).toBe('b\u0000');
    expect(shown.error).toBe('c\ud800');
  });
});
