// SQL for job metadata rows: created at submit, moved to exactly one terminal state.
import { withTransaction, type Pool, type Queryable } from '../../stores/postgres/pool.js';

export type TerminalStatus = 'succeeded' | 'failed' | 'expired' | 'cancelled';

export interface JobRowInput {
  id: string;
  namespaceId: string;
  apiKeyId?: string | null;
  model: string;
  mode: 'sync' | 'polling' | 'stream';
  priority: 'urgent' | 'bulk' | 'test';
  environment: 'testnet' | 'mainnet';
  maxCost: bigint;
  createdAt: Date;
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
    }>(
      `select id, namespace_id, api_key_id, model, mode, status, node_address, attempts, tokens_in, tokens_out,
              max_cost, cost, created_at, dispatched_at, finished_at
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
    };
  }

  /**
   * Inserts the job row unless its id exists; returns false then. Serialized per id by a transaction-scoped
   * advisory lock: the table's key is (id, created_at) (partitioned by time), so two concurrent submissions of
   * one id (an Idempotency-Key sent twice at once) would otherwise both pass `not exists`.
   */
  async insertJob(pool: Pool, j: JobRowInput): Promise<boolean> {
    return withTransaction(pool, async (tx) => {
      await tx.query('select pg_advisory_xact_lock(hashtextextended($1, 7))', [j.id]);
      return this.insertJobRow(tx, j);
    });
  }

  private async insertJobRow(db: Queryable, j: JobRowInput): Promise<boolean> {
    const r = await db.query(
      `insert into jobs (id, namespace_id, api_key_id, model, mode, priority, environment, status, max_cost, created_at)
       select $1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9
       where not exists (select 1 from jobs where id = $1)`,
      [
        j.id,
        j.namespaceId,
        j.apiKeyId ?? null,
        j.model,
        j.mode,
        j.priority,
        j.environment,
        j.maxCost.toString(),
        j.createdAt,
      ],
    );
    return r.rowCount === 1;
  }

  async findStatus(db: Queryable, namespaceId: string, jobId: string): Promise<string | undefined> {
    const r = await db.query<{ status: string }>(
      'select status from jobs where id = $1 and namespace_id = $2',
      [jobId, namespaceId],
    );
    return r.rows[0]?.status;
  }

  async markDispatched(
    db: Queryable,
    namespaceId: string,
    jobId: string,
    node: string,
    attempt: number,
  ): Promise<void> {
    await db.query(
      `update jobs set status = 'dispatched', node_address = $3, attempts = $4, dispatched_at = now()
       where id = $1 and namespace_id = $2 and status in ('queued', 'dispatched')`,
      [jobId, namespaceId, node, attempt],
    );
  }

  /** Moves a job to a terminal state once; returns false when it already was terminal. */
  async markTerminal(
    db: Queryable,
    namespaceId: string,
    jobId: string,
    t: {
      status: TerminalStatus;
      cost?: bigint;
      tokensIn?: number;
      tokensOut?: number;
      latencyMs?: number;
      node?: string;
    },
  ): Promise<boolean> {
    const r = await db.query(
      `update jobs set status = $3, cost = $4, tokens_in = coalesce($5, tokens_in), tokens_out = coalesce($6, tokens_out),
         latency_ms = $7, node_address = coalesce($8, node_address), finished_at = now()
       where id = $1 and namespace_id = $2 and status in ('queued', 'dispatched')`,
      [
        jobId,
        namespaceId,
        t.status,
        t.cost?.toString() ?? null,
        t.tokensIn ?? null,
        t.tokensOut ?? null,
        t.latencyMs ?? null,
        t.node ?? null,
      ],
    );
    return r.rowCount === 1;
  }

  /**
   * Moves to 'expired' (cost 0) jobs still 'queued'/'dispatched' whose credit hold was closed without a charge
   * (voided or expired) before `closedBefore` — e.g. a submit that crashed between reserve and enqueue, whose
   * hold the sweeper released. One statement: the status predicate is re-checked on the locked row, so two
   * concurrent runs (or a late terminal transition of the job flow) move each job once. Returns the moved jobs.
   */
  async expireJobsWithClosedHolds(
    db: Queryable,
    closedBefore: Date,
    limit: number,
  ): Promise<
    Array<
      Pick<JobRow, 'id' | 'namespaceId' | 'model' | 'nodeAddress' | 'attempts' | 'createdAt' | 'dispatchedAt'>
    >
  > {
    const r = await db.query<{
      id: string;
      namespace_id: string;
      model: string;
      node_address: string | null;
      attempts: number;
      created_at: Date;
      dispatched_at: Date | null;
    }>(
      `with stale as (
         select j.id, j.created_at
           from jobs j
           join credit_holds h on h.job_id = j.id and h.namespace_id = j.namespace_id
          where j.status in ('queued', 'dispatched')
            and h.status in ('voided', 'expired')
            and h.closed_at < $1
          order by j.created_at
          limit $2)
       update jobs j set status = 'expired', cost = 0, finished_at = now()
         from stale
        where j.id = stale.id and j.created_at = stale.created_at and j.status in ('queued', 'dispatched')
       returning j.id, j.namespace_id, j.model, j.node_address, j.attempts, j.created_at, j.dispatched_at`,
      [closedBefore, limit],
    );
    return r.rows.map((x) => ({
      id: x.id,
      namespaceId: x.namespace_id,
      model: x.model,
      nodeAddress: x.node_address,
      attempts: x.attempts,
      createdAt: x.created_at,
      dispatchedAt: x.dispatched_at,
    }));
  }

  async countByStatus(db: Queryable, namespaceId: string): Promise<Record<string, number>> {
    const r = await db.query<{ status: string; n: number }>(
      'select status, count(*)::int as n from jobs where namespace_id = $1 group by status',
      [namespaceId],
    );
    return Object.fromEntries(r.rows.map((x) => [x.status, x.n]));
  }
}
