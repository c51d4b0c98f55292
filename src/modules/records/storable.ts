// What MongoDB/FerretDB cannot store, encoded (never dropped) at the edge of the records module, and decoded
// again when a document is read. Pure; no I/O.
//
// A valid API request must always yield a storable document, and that document must still show what was
// asked. FerretDB 1.x (on PostgreSQL jsonb) and MongoDB refuse, or silently alter, these values:
//  - a string holding U+0000 (jsonb refuses it: the whole insert fails) or a lone UTF-16 surrogate (the BSON
//    encoder replaces it with U+FFFD: silent loss) → `{ "__text__": "<the string as a JSON literal>" }`,
//    e.g. "a\u0000b" is stored as { __text__: "\"a\\u0000b\"" } (JSON escapes keep every code unit);
//  - an array directly inside an array (FerretDB 1.x: "nested arrays are not supported")
//    → `{ "__array__": [...] }` (its elements encoded the same way);
//  - nesting deeper than STORABLE_MAX_DEPTH objects/arrays (MongoDB's limit is 100; parsers and the BSON
//    serializer recurse) → the deeper subtree becomes `{ "__deep__": "<its JSON text>" }`, and stays so when
//    read, so no reader of a record ever meets unbounded depth;
//  - a key with `.`, a leading `$`, U+0000 or a lone surrogate → escaped by encodeKey (record.ts), which also
//    escapes a leading `_` in user keys: so a user key can never be mistaken for one of these markers.
// Numbers from JSON are always finite, so NaN/Infinity (which FerretDB refuses) cannot reach this point.

export const STORABLE_MARKERS = { text: '__text__', array: '__array__', deep: '__deep__' } as const;

/** Object/array levels kept as they are below a document's body; deeper subtrees become JSON text. */
export const STORABLE_MAX_DEPTH = 32;

// U+0000, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
// eslint-disable-next-line no-control-regex -- U+0000 is exactly what must be found
const UNSTORABLE_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** The same, global (for replacing each occurrence). */
export const UNSTORABLE_TEXT_ALL = new RegExp(UNSTORABLE_TEXT.source, 'g');

export function isStorableText(s: string): boolean {
  return !UNSTORABLE_TEXT.test(s);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/**
 * JSON.stringify without recursion: the same text for JSON data (plain objects, arrays, strings, finite
 * numbers, booleans, null; Dates as ISO strings), at any depth. JSON.stringify itself overflows the stack
 * near 5,000 levels, and a record event must still be written then.
 */
export function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value) ?? 'null';
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
  }
  const out: string[] = [];
  // A frame is a value still to write, or a piece of punctuation.
  const stack: Array<{ v: unknown; inArray: boolean } | { text: string }> = [{ v: value, inArray: true }];
  while (stack.length > 0) {
    const f = stack.pop()!;
    if ('text' in f) {
      out.push(f.text);
      continue;
    }
    let v = f.v;
    if (v instanceof Date) v = v.toISOString();
    if (Array.isArray(v)) {
      stack.push({ text: ']' });
      for (let i = v.length - 1; i >= 0; i -= 1) {
        stack.push({ v: v[i], inArray: true });
        if (i > 0) stack.push({ text: ',' });
      }
      out.push('[');
    } else if (typeof v === 'object' && v !== null) {
      const entries = Object.entries(v).filter(
        ([, x]) => x !== undefined && typeof x !== 'function' && typeof x !== 'symbol',
      );
      stack.push({ text: '}' });
      for (let i = entries.length - 1; i >= 0; i -= 1) {
        stack.push({ v: entries[i]![1], inArray: false });
        stack.push({ text: `${i > 0 ? ',' : ''}${JSON.stringify(entries[i]![0])}:` });
      }
      out.push('{');
    } else {
      // Scalars (and what JSON writes as null in an array).
      out.push(JSON.stringify(v) ?? 'null');
    }
  }
  return out.join('');
}

/**
 * A string field that must stay a string (e.g. `model`, which queries filter on): unstorable code units
 * written as JSON escapes (`\u0000`), readable and unambiguous for these values.
 */
export function toStorableString(s: string): string {
  return isStorableText(s) ? s : JSON.stringify(s).slice(1, -1);
}

/**
 * Encodes a value so that MongoDB and FerretDB store it exactly (see the file header). Keys are checked too:
 * an unstorable key (which the user-key encoding normally catches first) is escaped with `escapeKey`.
 */
export function toStorable(value: unknown, escapeKey: (k: string) => string, depth = 0): unknown {
  if (typeof value === 'string')
    return isStorableText(value) ? value : { [STORABLE_MARKERS.text]: JSON.stringify(value) };
  if (Array.isArray(value) || isPlainObject(value)) {
    if (depth >= STORABLE_MAX_DEPTH) return { [STORABLE_MARKERS.deep]: jsonText(value) };
    if (Array.isArray(value))
      return value.map((v) => {
        const e = toStorable(v, escapeKey, depth + 1);
        return Array.isArray(e) ? { [STORABLE_MARKERS.array]: e } : e;
      });
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const key = k.includes('.') || k.startsWith('$') || !isStorableText(k) ? escapeKey(k) : k;
      out[key] = toStorable(v, escapeKey, depth + 1);
    }
    return out;
  }
  return value;
}

/**
 * Reverses the `__text__` and `__array__` encodings where `value` is one of them; undefined otherwise.
 * (`__deep__` is left encoded on purpose.)
 */
export function fromStorableMarker(
  value: Record<string, unknown>,
  decodeValue: (v: unknown) => unknown,
): { value: unknown } | undefined {
  const keys = Object.keys(value);
  if (keys.length !== 1) return undefined;
  const text = value[STORABLE_MARKERS.text];
  if (typeof text === 'string') {
    try {
      return { value: JSON.parse(text) as unknown };
    } catch {
      return { value: text };
    }
  }
  const arr = value[STORABLE_MARKERS.array];
  if (Array.isArray(arr)) return { value: arr.map(decodeValue) };
  return undefined;
}
