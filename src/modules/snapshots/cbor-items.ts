// Byte-level DAG-CBOR helpers (pure): an array header for pre-encoded items, splitting an array into its items'
// bytes without decoding them, and scanning the leading values of a chunk's rows in place (streaming verify).

/** The minimal CBOR header of an array of `n` items (major type 4), as DAG-CBOR requires. */
export function arrayHeader(n: number): Uint8Array {
  if (n < 24) return Uint8Array.of(0x80 + n);
  if (n < 0x100) return Uint8Array.of(0x98, n);
  if (n < 0x10000) return Uint8Array.of(0x99, n >> 8, n & 0xff);
  if (n <= 0xffffffff) return Uint8Array.of(0x9a, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  throw new RangeError('array too long');
}

/** Concatenates pre-encoded items into the bytes of one DAG-CBOR array. */
export function encodeArrayOfEncoded(items: Uint8Array[]): Uint8Array {
  const header = arrayHeader(items.length);
  let size = header.length;
  for (const it of items) size += it.length;
  const out = new Uint8Array(size);
  out.set(header, 0);
  let at = header.length;
  for (const it of items) {
    out.set(it, at);
    at += it.length;
  }
  return out;
}

export class CborFormatError extends Error {}

/** Reads a head at `pos`: returns major type, argument and the position after the head. */
function readHead(b: Uint8Array, pos: number): { major: number; arg: number; next: number } {
  if (pos >= b.length) throw new CborFormatError(`truncated CBOR at byte ${pos}`);
  const first = b[pos]!;
  const major = first >> 5;
  const info = first & 0x1f;
  if (info < 24) return { major, arg: info, next: pos + 1 };
  const width = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
  if (width === 0) throw new CborFormatError(`unsupported CBOR additional info ${info} at byte ${pos}`);
  if (pos + 1 + width > b.length) throw new CborFormatError(`truncated CBOR at byte ${pos}`);
  let arg = 0;
  for (let i = 1; i <= width; i += 1) arg = arg * 256 + b[pos + i]!;
  return { major, arg, next: pos + 1 + width };
}

/** Returns the position just after the item that starts at `pos`. */
export function skipItem(b: Uint8Array, pos: number): number {
  const { major, arg, next } = readHead(b, pos);
  switch (major) {
    case 0:
    case 1:
    case 7:
      return next; // integers, simple values and floats carry their value in the head
    case 2:
    case 3:
      if (next + arg > b.length) throw new CborFormatError(`truncated CBOR string at byte ${pos}`);
      return next + arg;
    case 4: {
      let p = next;
      for (let i = 0; i < arg; i += 1) p = skipItem(b, p);
      return p;
    }
    case 5: {
      let p = next;
      for (let i = 0; i < arg * 2; i += 1) p = skipItem(b, p);
      return p;
    }
    case 6:
      return skipItem(b, next);
    default:
      throw new CborFormatError(`bad CBOR major type ${major} at byte ${pos}`);
  }
}

/** The bytes of each item of the top-level array in `b`; the array must fill `b` exactly. */
export function splitArray(b: Uint8Array): Uint8Array[] {
  const { major, arg, next } = readHead(b, 0);
  if (major !== 4) throw new CborFormatError('block is not a CBOR array');
  const out: Uint8Array[] = [];
  let p = next;
  for (let i = 0; i < arg; i += 1) {
    const end = skipItem(b, p);
    out.push(b.subarray(p, end));
    p = end;
  }
  if (p !== b.length) throw new CborFormatError(`trailing bytes after the array (${b.length - p})`);
  return out;
}

/** The first item of an array item when it is a text string (e.g. the day of a rollup row), without decoding the rest. */
export function firstText(b: Uint8Array): string {
  const arr = readHead(b, 0);
  if (arr.major !== 4 || arr.arg === 0) throw new CborFormatError('not a non-empty array');
  const t = readHead(b, arr.next);
  if (t.major !== 3) throw new CborFormatError('first item is not a text string');
  if (t.next + t.arg > b.length) throw new CborFormatError('truncated text string');
  return Buffer.from(b.buffer, b.byteOffset + t.next, t.arg).toString('utf8');
}

// Head of the item last read by scanHead (module state: no object per value on the millions-of-rows path).
let headArg = 0;
let headNext = 0;
let headWide = false;

function scanHead(b: Uint8Array, pos: number): number {
  if (pos >= b.length) throw new CborFormatError(`truncated CBOR at byte ${pos}`);
  const first = b[pos]!;
  const info = first & 0x1f;
  headWide = false;
  if (info < 24) {
    headArg = info;
    headNext = pos + 1;
  } else if (info === 24) {
    if (pos + 2 > b.length) throw new CborFormatError(`truncated CBOR at byte ${pos}`);
    headArg = b[pos + 1]!;
    headNext = pos + 2;
  } else if (info === 25) {
    if (pos + 3 > b.length) throw new CborFormatError(`truncated CBOR at byte ${pos}`);
    headArg = (b[pos + 1]! << 8) | b[pos + 2]!;
    headNext = pos + 3;
  } else if (info === 26) {
    if (pos + 5 > b.length) throw new CborFormatError(`truncated CBOR at byte ${pos}`);
    headArg = b[pos + 1]! * 0x1000000 + ((b[pos + 2]! << 16) | (b[pos + 3]! << 8) | b[pos + 4]!);
    headNext = pos + 5;
  } else if (info === 27) {
    if (pos + 9 > b.length) throw new CborFormatError(`truncated CBOR at byte ${pos}`);
    const hi = b[pos + 1]! * 0x1000000 + ((b[pos + 2]! << 16) | (b[pos + 3]! << 8) | b[pos + 4]!);
    const lo = b[pos + 5]! * 0x1000000 + ((b[pos + 6]! << 16) | (b[pos + 7]! << 8) | b[pos + 8]!);
    headWide = hi >= 0x200000; // beyond 2^53: the caller reads it as a bigint
    headArg = hi * 0x100000000 + lo;
    headNext = pos + 9;
  } else throw new CborFormatError(`unsupported CBOR additional info ${info} at byte ${pos}`);
  return first >> 5;
}

function wideAt(b: Uint8Array, pos: number): bigint {
  let v = 0n;
  for (let k = 1; k <= 8; k += 1) v = (v << 8n) | BigInt(b[pos + k]!);
  return v;
}

/**
 * Visits every row of a chunk (a DAG-CBOR array of row arrays), reading only its first `n` values — scalars: integers
 * (bigint beyond 2^53), text, bytes, null, booleans — into one reused array and skipping the rest of the row. Returns
 * the row count; the chunk must be exactly that array. The streaming verify reads millions of ledger rows this way.
 */
export function scanRows(chunk: Uint8Array, n: number, visit: (vals: unknown[]) => void): number {
  const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
  if (scanHead(b, 0) !== 4) throw new CborFormatError('chunk is not a CBOR array');
  const rows = headArg;
  let p = headNext;
  const vals: unknown[] = new Array<unknown>(n).fill(null);
  for (let r = 0; r < rows; r += 1) {
    if (scanHead(b, p) !== 4) throw new CborFormatError(`row ${r} is not an array`);
    const width = headArg;
    p = headNext;
    const take = Math.min(n, width);
    for (let i = 0; i < take; i += 1) {
      const first = b[p];
      if (first === 0xf6 || first === 0xf7 || first === 0xf4 || first === 0xf5) {
        vals[i] = first === 0xf4 ? false : first === 0xf5 ? true : null;
        p += 1;
        continue;
      }
      const major = scanHead(b, p);
      if (major === 0 || major === 1) {
        const v = headWide ? wideAt(b, p) : headArg;
        vals[i] = major === 0 ? v : typeof v === 'bigint' ? -1n - v : -1 - v;
        p = headNext;
      } else if (major === 2 || major === 3) {
        const end = headNext + headArg;
        if (end > b.length) throw new CborFormatError('truncated string');
        // Bytes are copied: the chunk may sit in a reused buffer.
        vals[i] = major === 3 ? b.toString('utf8', headNext, end) : new Uint8Array(b.subarray(headNext, end));
        p = end;
      } else throw new CborFormatError(`value ${i} of row ${r} is not a scalar`);
    }
    for (let i = take; i < n; i += 1) vals[i] = undefined;
    for (let i = take; i < width; i += 1) p = skipItem(b, p);
    visit(vals);
  }
  if (p !== b.length) throw new CborFormatError(`trailing bytes after the array (${b.length - p})`);
  return rows;
}

/** The number of rows of a chunk, each skipped over: every item must be an array and the chunk exactly that array. */
export function countItems(b: Uint8Array): number {
  if (scanHead(b, 0) !== 4) throw new CborFormatError('block is not a CBOR array');
  const n = headArg;
  let p = headNext;
  for (let i = 0; i < n; i += 1) {
    if (p >= b.length || b[p]! >> 5 !== 4) throw new CborFormatError(`row ${i} is not an array`);
    p = skipItem(b, p);
  }
  if (p !== b.length) throw new CborFormatError(`trailing bytes after the array (${b.length - p})`);
  return n;
}
