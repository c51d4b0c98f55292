// SQL for job metadata rows: created at submit, moved to exactly one terminal state.
import type { Environment, PriorityClass } from '../../config/vocabulary.js';
import type { Queryable } from '../../stores/postgres/pool.js';

export type TerminalStatus = 'succeeded' | 'failed' | 'expired' | 'cancelled';

export interface JobRowInput {
  id: string;
  namespaceId: string;
  apiKeyId?: string | null;
  model: string;
  mode: 'sync' | 'polling' | 'stream';
  priority: PriorityClass;
  environment: Environment;
  maxCost: bigint;
  createdAt: Date;
  /** SHA-256 (hex) of the request body when the job was submitted under an Idempotency-Key. */
  requestHash?: string | null;
  /** The network config version whose price table priced the job (0: none published). */
  priceVersion?: number | null;
}

/** A job's terminal transition, with the compact result stored beside it. */
export interface TerminalRowInput {
  id: string;
  namespaceId: string;
  /** The partition key. */
  createdAt: Date;
  status: TerminalStatus;
  cost?: bigint;
  tokensIn?: number;
  tokensOut?: number;
  latencyMs?: number;
  node?: string | null;
  attempts: number;
  result: unknown;
}

export interface JobRow {
  id: string;
  namespaceId: string;
  apiKeyId: string | null;
  model: string;
  mode: string;
  status: 'queued' | 'dispatched' | TerminalStatus;
  nodeAddress: string | null;
  attempts: number;
  tokensIn: number;
  tokensOut: number;
  maxCost: bigint;
  cost: bigint | null;
  createdAt: Date;
  dispatchedAt: Date | null;
  finishedAt: Date | null;
  requestHash?: string | null;
  environment?: Environment;
  /** The network config version whose prices the job was reserved and settled at; null before prices. */
  priceVersion?: number | null;
}

export class JobsRepository {
  /** One job of one namespace (another namespace's job id finds nothing). */
  async findJob(db: Queryable, namespaceId: string, jobId: string): Promise<JobRow | undefined> {
    const r = await db.query<{
      id: string;
      namespace_id: string;
      api_key_id: string | null;
      model: string;
      mode: string;
      status: JobRow['status'];
      node_address: string | null;
      attempts: number;
      tokens_in: number;
      tokens_out: number;
      max_cost: string;
      cost: string | null;
      created_at: Date;
      dispatched_at: Date | null;
      finished_at: Date | null;
      request_hash: string | null;
      environment: Environment;
      price_version: number | null;
    }>(
      `select id, namespace_id, api_key_id, model, mode, status, node_address, attempts, tokens_in, tokens_out,
              max_cost, cost, created_at, dispatched_at, finished_at, request_hash, environment, price_version
         from jobs where id = $1 and namespace_id = $2`,
      [jobId, namespaceId],
    );
    const x = r.rows[0];
    if (!x) return undefined;
    return {
      id: x.id,
      namespaceId: x.namespace_id,
      apiKeyId: x.api_key_id,
      model: x.model,
      mode: x.mode,
      status: x.status,
      nodeAddress: x.node_address,
      attempts: x.attempts,
      tokensIn: x.tokens_in,
      tokensOut: x.tokens_out,
      maxCost: BigInt(x.max_cost),
      cost: x.cost === null ? null : BigInt(x.cost),
      createdAt: x.created_at,
      dispatchedAt: x.dispatched_at,
      finishedAt: x.finished_at,
      requestHash: x.request_hash,
      environment: x.environment,
      priceVersion: x.price_version,
    };
  }

  /**
   * Inserts the rows of one submit batch, inside the unit of work that also reserved their credit (one
   * multi-row statement, unpublished until the broker confirms). No existence check: the credit hold's primary
   * key (job id), written in the same transaction under the namespace's balance lock, already makes a job id
   * unique; a replayed reservation inserts no row.
   */
  async insertJobs(tx: Queryable, rows: JobRowInput[]): Promise<void> {
    if (rows.length === 0) return;
    await tx.query({
      name: 'jobs_insert_batch',
      text: `insert into jobs (id, namespace_id, api_key_id, model, mode, priority, environment, status, max_cost, created_at, published, request_hash, price_version)
             select id, ns, key, model, mode, prio, env, 'queued', max_cost, created_at, false, h, pv
               from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::timestamptz[], $10::text[], $11::int[])
                 as v(id, ns, key, model, mode, prio, env, max_cost, created_at, h, pv)`,
      values: [
        rows.map((j) => j.id),
        rows.map((j) => j.namespaceId),
        rows.map((j) => j.apiKeyId ?? null),
        rows.map((j) => j.model),
        rows.map((j) => j.mode),
        rows.map((j) => j.priority),
        rows.map((j) => j.environment),
        rows.map((j) => j.maxCost.toString()),
        rows.map((j) => j.createdAt),
        rows.map((j) => j.requestHash ?? null),
        rows.map((j) => j.priceVersion ?? null),
      ],
    });
  }

  /**
   * Moves the rows of one finish batch to their terminal state, each once (the status predicate), and writes
   * the compact result of every row it moved — inside the unit of work that settled or voided their holds.
   * Every row is addressed by its partition key (id, created_at). Returns the ids it moved.
   */
  async finishJobs(tx: Queryable, rows: TerminalRowInput[]): Promise<Set<string>> {
    if (rows.length === 0) return new Set();
    const r = await tx.query<{ id: string }>({
      name: 'jobs_finish_batch',
      text: `with v as (
               select * from unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::text[], $5::int8[], $6::int4[],
                                    $7::int4[], $8::int4[], $9::text[], $10::int4[], $11::jsonb[])
                 as v(id, created_at, ns, status, cost, tin, tout, lat, node, attempts, result)),
             u as (
               update jobs j set status = v.status, cost = v.cost, tokens_in = coalesce(v.tin, j.tokens_in),
                      tokens_out = coalesce(v.tout, j.tokens_out), latency_ms = v.lat,
                      node_address = coalesce(v.node, j.node_address), attempts = greatest(j.attempts, v.attempts),
                      dispatched_at = case when v.node is null then j.dispatched_at else coalesce(j.dispatched_at, now()) end,
                      finished_at = now(), published = true
                 from v
                where j.id = v.id and j.created_at = v.created_at and j.namespace_id = v.ns
                  and j.status in ('queued', 'dispatched')
               returning j.id),
             r as (
               insert into job_results (job_id, namespace_id, created_at, status, result)
               select v.id, v.ns, v.created_at, v.status, v.result from v join u on u.id = v.id
               on conflict (job_id) do nothing)
             select id::text as id from u`,
      values: [
        rows.map((t) => t.id),
        rows.map((t) => t.createdAt),
        rows.map((t) => t.namespaceId),
        rows.map((t) => t.status),
        rows.map((t) => (t.cost ?? 0n).toString()),
        rows.map((t) => t.tokensIn ?? null),
        rows.map((t) => t.tokensOut ?? null),
        rows.map((t) => t.latencyMs ?? null),
        rows.map((t) => t.node ?? null),
        rows.map((t) => t.attempts),
        rows.map((t) => JSON.stringify(t.result)),
      ],
    });
    return new Set(r.rows.map((x) => x.id));
  }

  /** The broker confirmed these jobs' messages (a batch, off the request path). */
  async markPublished(db: Queryable, jobs: Array<{ id: string; createdAt: Date }>): Promise<void> {
    if (jobs.length === 0) return;
    await db.query({
      name: 'jobs_mark_published',
      text: `update jobs j set published = true from unnest($1::uuid[], $2::timestamptz[]) as v(id, created_at)
              where j.id = v.id and j.created_at = v.created_at and not j.published`,
      values: [jobs.map((j) => j.id), jobs.map((j) => j.createdAt)],
    });
  }

  /** The record stream confirmed these jobs' record events (the outbox flag of their results). */
  async markRecorded(db: Queryable, jobIds: string[]): Promise<void> {
    if (jobIds.length === 0) return;
    await db.query({
      name: 'jobs_mark_recorded',
      text: 'update job_results set recorded = true where job_id = any($1::uuid[]) and not recorded',
      values: [jobIds],
    });
  }

  /** The stored result of a finished job of this namespace (another namespace's finds nothing). */
  async findResult(db: Queryable, namespaceId: string, jobId: string): Promise<unknown> {
    const r = await db.query<{ result: unknown }>(
      'select result from job_results where job_id = $1 and namespace_id = $2',
      [jobId, namespaceId],
    );
    return r.rows[0]?.result;
  }

  /**
   * The stored result of a finished job of this namespace while its retention keeps it: 'expired' once the
   * result is older than the namespace's retention_days (even before the prune task deleted the row) or was
   * deleted; undefined when the job never had a result row.
   */
  async findRetainedResult(
    db: Queryable,
    namespaceId: string,
    jobId: string,
  ): Promise<{ result: unknown } | 'expired' | undefined> {
    const r = await db.query<{ result: unknown; retained: boolean }>({
      name: 'job_results_find_retained',
      text: `select r.result, r.finished_at >= now() - make_interval(days => n.retention_days) as retained
               from job_results r join namespaces n on n.id = r.namespace_id
              where r.job_id = $1 and r.namespace_id = $2`,
      values: [jobId, namespaceId],
    });
    const row = r.rows[0];
    if (!row) return undefined;
    return row.retained ? { result: row.result } : 'expired';
  }

  /**
   * Deletes up to `limit` result rows past their namespace's retention (oldest first per namespace, through
   * job_results_namespace_idx). The job rows stay: status and cost are ledger history; only the output goes.
   */
  async pruneExpiredResults(db: Queryable, limit: number): Promise<number> {
    const r = await db.query({
      name: 'job_results_prune',
      text: `with doomed as (
               select x.job_id from namespaces n
               cross join lateral (
                 select job_id from job_results r
                  where r.namespace_id = n.id and r.finished_at < now() - make_interval(days => n.retention_days)
                  order by r.finished_at limit $1) x
               limit $1)
             delete from job_results where job_id in (select job_id from doomed)`,
      values: [limit],
    });
    return r.rowCount ?? 0;
  }

  /** Queued jobs whose message was never confirmed by the broker, created before `before` (oldest first). */
  async findUnpublished(
    db: Queryable,
    after: Date,
    before: Date,
    limit: number,
  ): Promise<Array<Pick<JobRow, 'id' | 'namespaceId' | 'model' | 'createdAt' | 'apiKeyId'>>> {
    const r = await db.query<{
      id: string;
      namespace_id: string;
      model: string;
      created_at: Date;
      api_key_id: string | null;
    }>(
      `select id, namespace_id, model, created_at, api_key_id from jobs
        where not published and status = 'queued' and created_at >= $1 and created_at < $2
        order by created_at limit $3`,
      [after, before, limit],
    );
    return r.rows.map((x) => ({
      id: x.id,
      namespaceId: x.namespace_id,
      model: x.model,
      createdAt: x.created_at,
      apiKeyId: x.api_key_id,
    }));
  }

  /** Results whose record events were not confirmed, finished before `before` (oldest first). */
  async findUnrecorded(db: Queryable, before: Date, limit: number): Promise<unknown[]> {
    const r = await db.query<{ result: unknown }>(
      `select result from job_results where not recorded and finished_at < $1 order by finished_at limit $2`,
      [before, limit],
    );
    return r.rows.map((x) => x.result);
  }

  /**
   * Moves to 'expired' (cost 0) jobs still 'queued'/'dispatched' whose credit hold was closed without a charge
   * (voided or expired) before `closedBefore` — e.g. a submit that crashed between reserve and enqueue, whose
   * hold the sweeper released. One statement: the status predicate is re-checked on the locked row, so two
   * concurrent runs (or a late terminal transition of the job flow) move each job once; and the moved rows'
   * compact results are written in it too (recorded = false), like the normal close, so their record events
   * are re-sent by the recovery task if the caller dies before confirming them. Returns the stored results.
   */
  async expireJobsWithClosedHolds(db: Queryable, closedBefore: Date, limit: number): Promise<unknown[]> {
    const iso = (col: string) => `to_char(${col} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
    const r = await db.query<{ result: unknown }>(
      `with stale as (
         select j.id, j.created_at
           from jobs j
           join credit_holds h on h.job_id = j.id and h.namespace_id = j.namespace_id
          where j.status in ('queued', 'dispatched')
            and h.status in ('voided', 'expired')
            and h.closed_at < $1
          order by j.created_at
          limit $2),
       u as (
         update jobs j set status = 'expired', cost = 0, finished_at = now()
           from stale
          where j.id = stale.id and j.created_at = stale.created_at and j.status in ('queued', 'dispatched')
         returning j.id, j.namespace_id, j.model, j.node_address, j.attempts, j.created_at, j.dispatched_at,
                   j.finished_at, j.api_key_id, j.priority),
       v as (
         select u.id, u.namespace_id, u.created_at, jsonb_strip_nulls(jsonb_build_object(
                  'v', 1, 'jobId', u.id, 'namespaceId', u.namespace_id, 'model', u.model, 'kind', 'completion',
                  'status', 'expired', 'costMicro', '0',
                  'error', 'the job was left unfinished after its credit hold closed', 'errorCode', 'expired',
                  'attempts', u.attempts, 'createdAt', ${iso('u.created_at')},
                  'finishedAt', ${iso('u.finished_at')})) ||
                jsonb_build_object('nodeAddress', u.node_address, 'record', jsonb_build_object(
                  'apiKeyId', u.api_key_id, 'priority', u.priority,
                  'assignedAt', ${iso('u.dispatched_at')}, 'executionMs', 0)) as result
           from u),
       r as (
         insert into job_results (job_id, namespace_id, created_at, status, result)
         select id, namespace_id, created_at, 'expired', result from v
         on conflict (job_id) do nothing)
       select result from v`,
      [closedBefore, limit],
    );
    return r.rows.map((x) => x.result);
  }

  async countByStatus(db: Queryable, namespaceId: string): Promise<Record<string, number>> {
    const r = await db.query<{ status: string; n: number }>(
      'select status, count(*)::int as n from jobs where namespace_id = $1 group by status',
      [namespaceId],
    );
    return Object.fromEntries(r.rows.map((x) => [x.status, x.n]));
  }
}
