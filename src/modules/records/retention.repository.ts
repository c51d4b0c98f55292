// PostgreSQL side of retention: runs (receipts once done), namespaces to sweep, Space-plan charges and events.
import type { Queryable } from '../../stores/postgres/pool.js';

export interface ExportFile {
  name: string;
  sha256: string;
  count: number;
  bytes: number;
  /** File DAG CID (stores/cold/file-dag.ts); absent on exports written before CIDs were recorded. */
  cid?: string;
}

export interface RetentionRun {
  id: string;
  namespaceId: string;
  collection: string;
  cutoff: Date;
  status: 'exporting' | 'exported' | 'done';
  target: string;
  docCount: number | null;
  deletedCount: number | null;
  rangeFrom: Date | null;
  rangeTo: Date | null;
  files: ExportFile[];
  manifestSha256: string | null;
  manifestCid: string | null;
}

type RunRow = {
  id: string;
  namespace_id: string;
  collection: string;
  cutoff: Date;
  status: RetentionRun['status'];
  target: string;
  doc_count: bigint | null;
  deleted_count: bigint | null;
  range_from: Date | null;
  range_to: Date | null;
  files: ExportFile[];
  manifest_sha256: string | null;
  manifest_cid: string | null;
};
const toRun = (r: RunRow): RetentionRun => ({
  id: r.id,
  namespaceId: r.namespace_id,
  collection: r.collection,
  cutoff: r.cutoff,
  status: r.status,
  target: r.target,
  docCount: r.doc_count === null ? null : Number(r.doc_count),
  deletedCount: r.deleted_count === null ? null : Number(r.deleted_count),
  rangeFrom: r.range_from,
  rangeTo: r.range_to,
  files: r.files,
  manifestSha256: r.manifest_sha256,
  manifestCid: r.manifest_cid,
});

export class RetentionRepository {
  async listNamespaces(
    db: Queryable,
    afterId: string,
    limit: number,
  ): Promise<Array<{ id: string; retentionDays: number }>> {
    const r = await db.query<{ id: string; retention_days: number }>(
      'select id, retention_days from namespaces where id > $1 order by id limit $2',
      [afterId, limit],
    );
    return r.rows.map((x) => ({ id: x.id, retentionDays: x.retention_days }));
  }

  async findOpenRun(
    db: Queryable,
    namespaceId: string,
    collection: string,
  ): Promise<RetentionRun | undefined> {
    const r = await db.query<RunRow>(
      `select * from retention_runs where namespace_id = $1 and collection = $2 and status <> 'done'`,
      [namespaceId, collection],
    );
    return r.rows[0] ? toRun(r.rows[0]) : undefined;
  }

  async createRun(
    db: Queryable,
    run: { id: string; namespaceId: string; collection: string; cutoff: Date; target: string },
  ): Promise<RetentionRun> {
    const r = await db.query<RunRow>(
      `insert into retention_runs (id, namespace_id, collection, cutoff, target) values ($1, $2, $3, $4, $5)
       returning *`,
      [run.id, run.namespaceId, run.collection, run.cutoff, run.target],
    );
    return toRun(r.rows[0]!);
  }

  async markExported(
    db: Queryable,
    id: string,
    e: {
      files: ExportFile[];
      docCount: number;
      rangeFrom: Date | null;
      rangeTo: Date | null;
      manifestSha256: string;
      manifestCid: string;
    },
  ): Promise<void> {
    await db.query(
      `update retention_runs set status = 'exported', files = $2, doc_count = $3, range_from = $4, range_to = $5,
         manifest_sha256 = $6, manifest_cid = $7, exported_at = now() where id = $1 and status = 'exporting'`,
      [id, JSON.stringify(e.files), e.docCount, e.rangeFrom, e.rangeTo, e.manifestSha256, e.manifestCid],
    );
  }

  async markDone(db: Queryable, id: string, deletedCount: number): Promise<void> {
    await db.query(
      `update retention_runs set status = 'done', deleted_count = $2, finished_at = now() where id = $1`,
      [id, deletedCount],
    );
  }

  async listRuns(db: Queryable, namespaceId: string): Promise<RetentionRun[]> {
    const r = await db.query<RunRow>(
      'select * from retention_runs where namespace_id = $1 order by started_at, id',
      [namespaceId],
    );
    return r.rows.map(toRun);
  }
}
