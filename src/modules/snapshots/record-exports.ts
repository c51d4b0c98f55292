// The `record_exports` section: the record exports (MongoDB documents past retention, exported then deleted) that no
// earlier snapshot listed, one row per export file and one per run manifest, with the file's CID and SHA-256. A
// deleted document stays provable: its export is pinned by CID in cold storage, and the CID is in a chained, signed
// snapshot (docs/snapshot-format.md §3.3 and §13). Not a table: restore skips it (the runs travel in `retention_runs`).
import { CID } from 'multiformats/cid';
import * as dagCbor from '@ipld/dag-cbor';
import type { PoolClient, Queryable } from '../../stores/postgres/pool.js';
import { encodeRow, rowValues, type TableSpec } from '../canonical/index.js';

export const RECORD_EXPORTS = 'record_exports';

const col = (name: string, type: TableSpec['columns'][number]['type']) => ({ name, type });

export const recordExportsSpec: TableSpec = {
  name: RECORD_EXPORTS,
  columns: [
    col('run_id', 'uuid'),
    col('file', 'text'),
    col('namespace_id', 'uuid'),
    col('collection', 'text'),
    col('cid', 'text'),
    col('sha256', 'text'),
    col('bytes', 'int8'),
    col('docs', 'int8'),
    col('exported_at', 'ts'),
  ],
  orderBy: ['run_id', 'file'],
};

/** Column positions (0-based) of a `record_exports` row. */
export const RECORD_EXPORT_CID = 4;
export const RECORD_EXPORT_SHA256 = 5;

// Exported runs (verified; deleting or done) whose export has CIDs and that no recorded snapshot listed yet.
const unreferenced = `r.status <> 'exporting' and r.manifest_cid is not null and r.snapshot_seq is null`;

/** Ids of the runs the section lists, read in the snapshot's own (repeatable-read) view. */
export async function unreferencedExportRuns(tx: Queryable): Promise<string[]> {
  const r = await tx.query<{ id: string }>(
    `select r.id from retention_runs r where ${unreferenced} order by r.id`,
  );
  return r.rows.map((x) => x.id);
}

/** The section's rows, encoded, in key order (run id, then file name bytewise). */
export async function* recordExportRows(tx: PoolClient): AsyncIterable<Uint8Array> {
  const at = `(extract(epoch from r.exported_at) * 1000000)::int8`;
  const r = await tx.query<unknown[]>({
    text: `select x.run_id::text, x.file, x.namespace_id::text, x.collection, x.cid, x.sha256, x.bytes, x.docs, x.at
      from (
        select r.id as run_id, f->>'name' as file, r.namespace_id, r.collection, f->>'cid' as cid,
          f->>'sha256' as sha256, (f->>'bytes')::int8 as bytes, (f->>'count')::int8 as docs, ${at} as at
        from retention_runs r cross join lateral jsonb_array_elements(r.files) f where ${unreferenced}
        union all
        select r.id, r.namespace_id::text || '/' || r.collection || '/' || r.id::text || '/manifest.json',
          r.namespace_id, r.collection, r.manifest_cid, r.manifest_sha256, null, r.doc_count, ${at}
        from retention_runs r where ${unreferenced}
      ) x order by x.run_id, x.file collate "C"`,
    rowMode: 'array',
  });
  for (const row of r.rows) yield encodeRow(rowValues(recordExportsSpec, row));
}

/** Marks the listed runs as referenced by the snapshot `seq` (in the transaction that records it). */
export async function markExportsReferenced(tx: Queryable, runIds: string[], seq: number): Promise<void> {
  if (runIds.length === 0) return;
  await tx.query(
    'update retention_runs set snapshot_seq = $2 where id = any($1::uuid[]) and snapshot_seq is null',
    [runIds, seq],
  );
}

/** The first row that does not name a file DAG root (CIDv1 dag-cbor/sha2-256) and a SHA-256, as a message. */
export function checkRecordExportRows(rows: unknown[][]): string | undefined {
  for (const r of rows) {
    let cid: CID | undefined;
    try {
      cid = CID.parse(String(r[RECORD_EXPORT_CID]));
    } catch {
      cid = undefined;
    }
    const sha = r[RECORD_EXPORT_SHA256];
    if (
      !cid ||
      cid.code !== dagCbor.code ||
      cid.multihash.code !== 0x12 ||
      !/^[0-9a-f]{64}$/.test(String(sha))
    )
      return `record export ${String(r[1])} of run ${String(r[0])}: bad CID or SHA-256`;
  }
  return undefined;
}
