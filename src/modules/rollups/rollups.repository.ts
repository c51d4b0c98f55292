// SQL of rollups: aggregate a day range of jobs and ledger entries, read rows back canonically, record periods,
// list job partitions and compare their detail totals with the rollups.
import type { PoolClient, Queryable } from '../../stores/postgres/pool.js';
import { jobRollupsSpec, ledgerRollupsSpec, selectSql } from '../canonical/index.js';
import { FINISHED_STATUSES, latencyBucketsSql } from './rollup.js';

const finished = `(${FINISHED_STATUSES.map((s) => `'${s}'`).join(', ')})`;

export interface Totals {
  jobs: bigint;
  tokens: bigint;
  credits: bigint;
}

export interface JobPartition {
  name: string;
  from: Date;
  to: Date;
}

export class RollupsRepository {
  async lastRolledDay(db: Queryable): Promise<string | undefined> {
    const r = await db.query<{ d: string | null }>('select max(day)::text as d from rollup_periods');
    return r.rows[0]?.d ?? undefined;
  }

  /** The first day with any detail (one scan; only needed before the first rollup). */
  async firstDetailDay(db: Queryable): Promise<string | undefined> {
    const r = await db.query<{ d: string | null }>(
      `select to_char(least((select min(created_at) from jobs), (select min(created_at) from ledger_entries))
         at time zone 'UTC', 'YYYY-MM-DD') as d`,
    );
    return r.rows[0]?.d ?? undefined;
  }

  async rolledDays(db: Queryable, from: string, to: string): Promise<string[]> {
    const r = await db.query<{ d: string }>(
      'select day::text as d from rollup_periods where day >= $1 and day < $2 order by day',
      [from, to],
    );
    return r.rows.map((x) => x.d);
  }

  /** Serializes rollup writers for the rest of the transaction (the task runner already elects one; the CLI may race it). */
  async lock(tx: PoolClient): Promise<void> {
    await tx.query(`select pg_advisory_xact_lock(hashtextextended('rty:rollup:' || current_schema(), 0))`);
  }

  async aggregateJobs(tx: PoolClient, from: Date, to: Date): Promise<number> {
    const r = await tx.query(
      // One row per price version too: a row's credits are then one price table's prices over its tokens.
      `insert into job_rollups (day, namespace_id, model, node_address, status, jobs, tokens_in, tokens_out, credits,
         latency_count, latency_sum_ms, latency_buckets, price_version)
       select (created_at at time zone 'UTC')::date, namespace_id, model, coalesce(node_address, ''), status,
         count(*), coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0), coalesce(sum(cost), 0)::int8,
         count(latency_ms), coalesce(sum(latency_ms), 0), ${latencyBucketsSql()}, coalesce(price_version, 0)
       from jobs where created_at >= $1 and created_at < $2 and status in ${finished}
       group by 1, 2, 3, 4, 5, coalesce(price_version, 0)`,
      [from, to],
    );
    return r.rowCount ?? 0;
  }

  async aggregateLedger(tx: PoolClient, from: Date, to: Date): Promise<number> {
    const r = await tx.query(
      `insert into ledger_rollups (day, owner, kind, entries, amount)
       select (created_at at time zone 'UTC')::date, coalesce(namespace_id::text, node_address), kind,
         count(*), sum(amount)::int8
       from ledger_entries where created_at >= $1 and created_at < $2
       group by 1, 2, 3`,
      [from, to],
    );
    return r.rowCount ?? 0;
  }

  async jobRollupRows(db: Queryable, from: string, to: string): Promise<Array<Record<string, unknown>>> {
    return (await db.query(selectSql(jobRollupsSpec, 'where day >= $1 and day < $2'), [from, to])).rows;
  }

  async ledgerRollupRows(db: Queryable, from: string, to: string): Promise<Array<Record<string, unknown>>> {
    return (await db.query(selectSql(ledgerRollupsSpec, 'where day >= $1 and day < $2'), [from, to])).rows;
  }

  async insertPeriods(
    tx: PoolClient,
    rows: Array<{ day: string; jobGroups: number; ledgerGroups: number; jobs: bigint; hash: Buffer }>,
  ): Promise<void> {
    await tx.query(
      `insert into rollup_periods (day, job_groups, ledger_groups, jobs, hash)
       select * from unnest($1::date[], $2::int8[], $3::int8[], $4::int8[], $5::bytea[])`,
      [
        rows.map((r) => r.day),
        rows.map((r) => r.jobGroups),
        rows.map((r) => r.ledgerGroups),
        rows.map((r) => r.jobs.toString()),
        rows.map((r) => r.hash),
      ],
    );
  }

  async periods(db: Queryable, from: string, to: string): Promise<Array<{ day: string; hash: Buffer }>> {
    const r = await db.query<{ day: string; hash: Buffer }>(
      'select day::text as day, hash from rollup_periods where day >= $1 and day < $2 order by day',
      [from, to],
    );
    return r.rows;
  }

  async jobPartitions(db: Queryable): Promise<JobPartition[]> {
    const r = await db.query<{ name: string; bound: string }>(
      `select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound
       from pg_inherits i join pg_class c on c.oid = i.inhrelid
       where i.inhparent = 'jobs'::regclass order by c.relname`,
    );
    const out: JobPartition[] = [];
    for (const row of r.rows) {
      const m = /FROM \('([^']+)'\) TO \('([^']+)'\)/.exec(row.bound);
      if (!m) continue; // the default partition has no range and is never pruned
      const t = await db.query<{ f: Date; t: Date }>('select $1::timestamptz as f, $2::timestamptz as t', [
        m[1],
        m[2],
      ]);
      out.push({ name: row.name, from: t.rows[0]!.f, to: t.rows[0]!.t });
    }
    return out;
  }

  /** Detail totals of one partition; `unfinished` counts jobs that no rollup can hold yet. */
  async partitionTotals(db: Queryable, partition: string): Promise<Totals & { unfinished: bigint }> {
    const r = await db.query<{ jobs: bigint; tokens: bigint; credits: bigint; unfinished: bigint }>(
      `select count(*) filter (where status in ${finished}) as jobs,
         coalesce(sum(tokens_in::int8 + tokens_out) filter (where status in ${finished}), 0)::int8 as tokens,
         coalesce(sum(cost) filter (where status in ${finished}), 0)::int8 as credits,
         count(*) filter (where status not in ${finished}) as unfinished
       from "${partition.replace(/"/g, '""')}"`,
    );
    return r.rows[0]!;
  }

  async rollupTotals(db: Queryable, from: string, to: string): Promise<Totals> {
    const r = await db.query<Totals>(
      `select coalesce(sum(jobs), 0)::int8 as jobs, coalesce(sum(tokens_in + tokens_out), 0)::int8 as tokens,
         coalesce(sum(credits), 0)::int8 as credits from job_rollups where day >= $1 and day < $2`,
      [from, to],
    );
    return r.rows[0]!;
  }

  async dropPartition(tx: PoolClient, p: JobPartition, totals: Totals, snapshotCid: string): Promise<void> {
    const ident = `"${p.name.replace(/"/g, '""')}"`;
    await tx.query(`alter table jobs detach partition ${ident}`);
    await tx.query(`drop table ${ident}`);
    await tx.query(
      `insert into pruned_job_partitions (partition, range_from, range_to, jobs, tokens, credits, snapshot_cid)
       values ($1, $2, $3, $4, $5, $6, $7)`,
      [
        p.name,
        p.from,
        p.to,
        totals.jobs.toString(),
        totals.tokens.toString(),
        totals.credits.toString(),
        snapshotCid,
      ],
    );
  }
}
