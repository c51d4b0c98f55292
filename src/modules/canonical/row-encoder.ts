// A small canonical DAG-CBOR encoder for row values (pure): the types rows hold (null, booleans, integers, strings,
// bytes, arrays), byte-for-byte what @ipld/dag-cbor produces, without its per-call cost (rows are encoded by millions).

export type RowValue = null | boolean | number | bigint | string | Uint8Array | RowValue[];

const MAX_U64 = (1n << 64n) - 1n;

export class RowEncoder {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  private head(major: number, n: number | bigint): void {
    this.ensure(9);
    const m = major << 5;
    if (typeof n === 'number' && n < 24) this.buf[this.pos++] = m | n;
    else if (typeof n === 'number' && n < 0x100) {
      this.buf[this.pos++] = m | 24;
      this.buf[this.pos++] = n;
    } else if (typeof n === 'number' && n < 0x10000) {
      this.buf[this.pos++] = m | 25;
      this.buf.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else if (typeof n === 'number' && n <= 0xffffffff) {
      this.buf[this.pos++] = m | 26;
      this.buf.writeUInt32BE(n, this.pos);
      this.pos += 4;
    } else {
      const big = BigInt(n);
      if (big < 0x100000000n) return this.head(major, Number(big));
      if (big > MAX_U64) throw new RangeError('integer outside 64 bits');
      this.buf[this.pos++] = m | 27;
      this.buf.writeBigUInt64BE(big, this.pos);
      this.pos += 8;
    }
  }

  private value(v: RowValue): void {
    if (v === null) {
      this.ensure(1);
      this.buf[this.pos++] = 0xf6;
    } else if (typeof v === 'boolean') {
      this.ensure(1);
      this.buf[this.pos++] = v ? 0xf5 : 0xf4;
    } else if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new TypeError(`rows hold integers only, got ${v}`);
      if (v >= 0) this.head(0, v);
      else this.head(1, -1 - v);
    } else if (typeof v === 'bigint') {
      if (v >= 0n) this.head(0, v <= 0xffffffffn ? Number(v) : v);
      else this.head(1, -1n - v <= 0xffffffffn ? Number(-1n - v) : -1n - v);
    } else if (typeof v === 'string') {
      const len = Buffer.byteLength(v, 'utf8');
      this.head(3, len);
      this.ensure(len);
      this.pos += this.buf.write(v, this.pos, 'utf8');
    } else if (v instanceof Uint8Array) {
      this.head(2, v.length);
      this.ensure(v.length);
      this.buf.set(v, this.pos);
      this.pos += v.length;
    } else {
      this.head(4, v.length);
      for (const x of v) this.value(x);
    }
  }

  /** The encoding of one row (a copy, safe to keep). */
  encode(row: RowValue[]): Uint8Array {
    this.pos = 0;
    this.value(row);
    return Uint8Array.prototype.slice.call(this.buf, 0, this.pos);
  }
}

const shared = new RowEncoder();

export function encodeRowFast(row: RowValue[]): Uint8Array {
  return shared.encode(row);
}
