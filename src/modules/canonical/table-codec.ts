// Canonical encoding of table rows (pure): each column type's SQL read expression, its DAG-CBOR value and the
// typed unnest() that writes it back. Timestamps travel as integer microseconds so that a round trip is exact.
import { encodeRowFast, type RowValue } from './row-encoder.js';

export type ColumnType =
  | 'uuid'
  | 'text'
  | 'int'
  | 'int8'
  | 'bool'
  | 'ts'
  | 'date'
  | 'json'
  | 'bytea'
  | 'int8[]'
  | 'float8';

export interface Column {
  name: string;
  type: ColumnType;
}

export interface TableSpec {
  /** Section name in the snapshot; also the table name. */
  name: string;
  columns: Column[];
  /** Columns of the primary key, in the order rows are sorted (the Merkle leaf order). */
  orderBy: string[];
  /** Restore needs `overriding system value` (identity columns kept as they were). */
  identity?: boolean;
}

export type CellValue = string | number | bigint | boolean | Uint8Array | bigint[] | null;

const q = (name: string) => `"${name}"`;

// A double (float8) travels as PostgreSQL's shortest exact text (extra_float_digits 1): blocks hold no floats, and
// the text casts back to the same bits.
export function selectExpression(c: Column): string {
  switch (c.type) {
    case 'uuid':
    case 'date':
    case 'json':
    case 'int8[]':
    case 'float8':
      return `${q(c.name)}::text`;
    case 'ts':
      return `(extract(epoch from ${q(c.name)}) * 1000000)::int8`;
    default:
      return q(c.name);
  }
}

/** SELECT of every column in canonical form, ordered by the key; `where` is trusted SQL from the caller. */
export function selectSql(t: TableSpec, where = ''): string {
  const cols = t.columns.map((c, i) => `${selectExpression(c)} as c${i}`).join(', ');
  return `select ${cols} from ${q(t.name)} ${where} order by ${t.orderBy.map(q).join(', ')}`;
}

function parseInt8Array(text: string): bigint[] {
  const inner = text.replace(/^\{|\}$/g, '');
  return inner === '' ? [] : inner.split(',').map((s) => BigInt(s));
}

/** A database row (from selectSql, as an object or in array row mode) as the array of canonical values that is encoded. */
export function rowValues(t: TableSpec, row: Record<string, unknown> | unknown[]): CellValue[] {
  const arr = Array.isArray(row);
  return t.columns.map((c, i) => {
    const v = arr ? row[i] : row[`c${i}`];
    if (v === null || v === undefined) return null;
    switch (c.type) {
      case 'int8':
      case 'ts':
        return typeof v === 'bigint' ? v : BigInt(v as string);
      case 'int':
        return Number(v);
      case 'bool':
        return Boolean(v);
      case 'bytea':
        return new Uint8Array(v as Buffer);
      case 'int8[]':
        return parseInt8Array(v as string);
      default:
        return String(v);
    }
  });
}

/** Canonical DAG-CBOR of a row (the Merkle leaf and the item inside a chunk block). */
export function encodeRow(values: CellValue[]): Uint8Array {
  return encodeRowFast(values as RowValue[]);
}

/** Decoded values back to what the unnest() parameters take (strings for int8, Buffers for bytea). */
export function restoreParams(t: TableSpec, rows: unknown[][]): unknown[] {
  return t.columns.map((c, i) =>
    rows.map((r) => {
      const v = r[i];
      if (v === null || v === undefined) return null;
      switch (c.type) {
        case 'int8':
        case 'ts':
          return String(v);
        case 'int':
          return Number(v);
        case 'bytea':
          return Buffer.from(v as Uint8Array);
        case 'int8[]':
          return `{${(v as Array<number | bigint>).map(String).join(',')}}`;
        default:
          return v;
      }
    }),
  );
}

const paramType: Record<ColumnType, string> = {
  uuid: 'uuid[]',
  text: 'text[]',
  int: 'int4[]',
  int8: 'int8[]',
  bool: 'bool[]',
  ts: 'int8[]',
  date: 'date[]',
  json: 'jsonb[]',
  bytea: 'bytea[]',
  'int8[]': 'text[]',
  float8: 'float8[]',
};

function fromParam(c: Column, v: string): string {
  if (c.type === 'ts')
    return `case when ${v} is null then null else timestamptz 'epoch' + ${v} * interval '1 microsecond' end`;
  if (c.type === 'int8[]') return `${v}::int8[]`;
  return v;
}

/** INSERT … SELECT FROM unnest($1, $2, …) writing rows in the form restoreParams() produces. */
export function insertSql(t: TableSpec): string {
  const cols = t.columns.map((c) => q(c.name)).join(', ');
  const params = t.columns.map((c, i) => `$${i + 1}::${paramType[c.type]}`).join(', ');
  const vals = t.columns.map((c, i) => fromParam(c, `v.c${i}`)).join(', ');
  const aliases = t.columns.map((_, i) => `c${i}`).join(', ');
  const overriding = t.identity ? ' overriding system value' : '';
  return `insert into ${q(t.name)} (${cols})${overriding} select ${vals} from unnest(${params}) as v(${aliases})`;
}
