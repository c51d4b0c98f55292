// SQL of snapshot records and of the small facts a manifest names (config head, rollup range).
import type { Queryable } from '../../stores/postgres/pool.js';
import type { LedgerTotals } from './snapshot-deep.js';

export interface SnapshotRecord {
  seq: number;
  cid: string;
  prevCid: string | null;
  sizeBytes: bigint;
  location: string;
  rollupFrom: string | null;
  rollupTo: string | null;
  auditSeq: bigint | null;
  auditHash: Buffer | null;
  createdAt: Date;
  verifiedAt: Date | null;
}

type Row = {
  seq: bigint;
  cid: string;
  prev_cid: string | null;
  size_bytes: bigint;
  location: string;
  rollup_from: string | null;
  rollup_to: string | null;
  audit_seq: bigint | null;
  audit_hash: Buffer | null;
  created_at: Date;
  verified_at: Date | null;
};

const columns = `seq, cid, prev_cid, size_bytes, location, rollup_from::text as rollup_from, rollup_to::text as rollup_to,
  audit_seq, audit_hash, created_at, verified_at`;
const toRecord = (r: Row): SnapshotRecord => ({
  seq: Number(r.seq),
  cid: r.cid,
  prevCid: r.prev_cid,
  sizeBytes: r.size_bytes,
  location: r.location,
  rollupFrom: r.rollup_from,
  rollupTo: r.rollup_to,
  auditSeq: r.audit_seq,
  auditHash: r.audit_hash,
  createdAt: r.created_at,
  verifiedAt: r.verified_at,
});

export class SnapshotsRepository {
  async latest(db: Queryable): Promise<SnapshotRecord | undefined> {
    const r = await db.query<Row>(`select ${columns} from snapshots order by seq desc limit 1`);
    return r.rows[0] ? toRecord(r.rows[0]) : undefined;
  }

  async byCid(db: Queryable, cid: string): Promise<SnapshotRecord | undefined> {
    const r = await db.query<Row>(`select ${columns} from snapshots where cid = $1`, [cid]);
    return r.rows[0] ? toRecord(r.rows[0]) : undefined;
  }

  async list(db: Queryable, limit: number): Promise<SnapshotRecord[]> {
    const r = await db.query<Row>(`select ${columns} from snapshots order by seq desc limit $1`, [limit]);
    return r.rows.map(toRecord);
  }

  async insert(db: Queryable, s: Omit<SnapshotRecord, 'verifiedAt'> & { verifiedAt: Date }): Promise<void> {
    await db.query(
      `insert into snapshots (seq, cid, prev_cid, size_bytes, location, rollup_from, rollup_to, audit_seq, audit_hash,
         created_at, verified_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [
        s.seq,
        s.cid,
        s.prevCid,
        s.sizeBytes.toString(),
        s.location,
        s.rollupFrom,
        s.rollupTo,
        s.auditSeq?.toString() ?? null,
        s.auditHash,
        s.createdAt,
        s.verifiedAt,
      ],
    );
  }

  async markVerified(db: Queryable, cid: string, at: Date): Promise<void> {
    await db.query('update snapshots set verified_at = $2 where cid = $1', [cid, at]);
  }

  /** The newest verified snapshot whose rollup range holds [fromDay, lastDay]. */
  async verifiedCovering(
    db: Queryable,
    fromDay: string,
    lastDay: string,
  ): Promise<SnapshotRecord | undefined> {
    const r = await db.query<Row>(
      `select ${columns} from snapshots where verified_at is not null and rollup_from <= $1 and rollup_to >= $2
       order by seq desc limit 1`,
      [fromDay, lastDay],
    );
    return r.rows[0] ? toRecord(r.rows[0]) : undefined;
  }

  async configHead(db: Queryable): Promise<{ version: number; digest: string } | undefined> {
    const r = await db.query<{ version: number; digest: string }>(
      'select version, digest from network_config_versions order by version desc limit 1',
    );
    return r.rows[0];
  }

  async rollupRange(db: Queryable): Promise<{ from: string; to: string } | undefined> {
    const r = await db.query<{ f: string | null; t: string | null }>(
      'select min(day)::text as f, max(day)::text as t from rollup_periods',
    );
    const row = r.rows[0];
    return row?.f && row.t ? { from: row.f, to: row.t } : undefined;
  }

  /** The ledger totals a manifest carries, read in the snapshot's own view (so they equal its tables). */
  async ledgerTotals(db: Queryable): Promise<LedgerTotals> {
    const r = await db.query<LedgerTotals>(
      `select (select count(*) from ledger_entries)::text as "entries",
         (select coalesce(max(id), 0) from ledger_entries)::text as "lastEntryId",
         (select coalesce(sum(available), 0) from credit_balances)::text as "available",
         (select coalesce(sum(reserved), 0) from credit_balances)::text as "reserved",
         (select coalesce(sum(bonus_available), 0) from credit_balances)::text as "bonusAvailable",
         (select coalesce(sum(earned), 0) from node_balances)::text as "earned",
         (select coalesce(sum(paid_out), 0) from node_balances)::text as "paidOut",
         (select count(*) from credit_holds where status = 'pending')::text as "pendingHolds",
         (select coalesce(sum(amount), 0) from credit_holds where status = 'pending')::text as "pendingHeld"`,
    );
    return r.rows[0]!;
  }

  /** The snapshot this database was restored from (its first snapshot names it as origin), if any. */
  async origin(db: Queryable): Promise<string | undefined> {
    const r = await db.query<{ target: string }>(
      `select target from audit_log where action = 'network.restore' order by seq desc limit 1`,
    );
    return r.rows[0]?.target;
  }
}
