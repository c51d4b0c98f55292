// SQL of the audit log: head under a transaction-scoped lock, append, and ordered reads in pages.
import type { PoolClient, Queryable } from '../../stores/postgres/pool.js';
import type { AuditEntry, JsonValue } from './audit-chain.js';

type Row = {
  seq: bigint;
  at_us: bigint;
  actor: string;
  action: string;
  target: string | null;
  body: JsonValue;
  prev_hash: Buffer;
  hash: Buffer;
};

const columns = `seq, (extract(epoch from at) * 1000000)::int8 as at_us, actor, action, target, body, prev_hash, hash`;

const toEntry = (r: Row): AuditEntry => ({
  seq: r.seq,
  atMicros: r.at_us,
  actor: r.actor,
  action: r.action,
  target: r.target,
  body: r.body,
  prevHash: r.prev_hash,
  hash: r.hash,
});

export class AuditRepository {
  /** Serializes appenders for the rest of the transaction; returns the head and the transaction's time. */
  async lockHead(tx: PoolClient): Promise<{ seq: bigint; hash: Buffer | undefined; nowMicros: bigint }> {
    await tx.query(`select pg_advisory_xact_lock(hashtextextended('rty:audit_log:' || current_schema(), 0))`);
    const r = await tx.query<{ seq: bigint; hash: Buffer; now_us: bigint }>(
      `select l.seq, l.hash, (extract(epoch from now()) * 1000000)::int8 as now_us
       from (select 1) one left join lateral (select seq, hash from audit_log order by seq desc limit 1) l on true`,
    );
    const row = r.rows[0]!;
    return { seq: row.seq ?? 0n, hash: row.hash ?? undefined, nowMicros: row.now_us };
  }

  async insert(tx: PoolClient, e: AuditEntry): Promise<void> {
    await tx.query(
      `insert into audit_log (seq, at, actor, action, target, body, prev_hash, hash)
       values ($1, timestamptz 'epoch' + $2::int8 * interval '1 microsecond', $3, $4, $5, $6::jsonb, $7, $8)`,
      [
        e.seq.toString(),
        e.atMicros.toString(),
        e.actor,
        e.action,
        e.target,
        JSON.stringify(e.body),
        e.prevHash,
        e.hash,
      ],
    );
  }

  async readAfter(db: Queryable, afterSeq: bigint, limit: number): Promise<AuditEntry[]> {
    const r = await db.query<Row>(`select ${columns} from audit_log where seq > $1 order by seq limit $2`, [
      afterSeq.toString(),
      limit,
    ]);
    return r.rows.map(toEntry);
  }

  async head(db: Queryable): Promise<{ seq: bigint; hash: Buffer } | undefined> {
    const r = await db.query<{ seq: bigint; hash: Buffer }>(
      'select seq, hash from audit_log order by seq desc limit 1',
    );
    return r.rows[0];
  }
}
