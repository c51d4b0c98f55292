// SQL for spot-check verdicts (qc_checks, migration 0095): the verdict row is the check's idempotency key.
import type { Environment } from '../../config/vocabulary.js';
import type { PoolClient, Queryable } from '../../stores/postgres/pool.js';

export type QcVerdict = 'agreed' | 'original_wrong' | 'blind_wrong' | 'inconclusive';

export interface QcCheckRow {
  jobId: string;
  namespaceId: string;
  model: string;
  environment: Environment;
  rule: 'exact' | 'similarity';
  verdict: QcVerdict;
  nodeA: string;
  nodeB: string;
  nodeC: string | null;
  blindJobId: string;
  tieJobId: string | null;
  wrongNode: string | null;
  similarity: number;
}

export class QcChecksRepository {
  /** Inserts the verdict; false when the check was decided before (a replay or a duplicate: nothing to do). */
  async insertVerdict(tx: PoolClient, r: QcCheckRow): Promise<boolean> {
    const res = await tx.query(
      `insert into qc_checks (job_id, namespace_id, model, environment, rule, verdict, node_a, node_b, node_c,
                              blind_job_id, tie_job_id, wrong_node, similarity)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
       on conflict (job_id) do nothing`,
      [
        r.jobId,
        r.namespaceId,
        r.model,
        r.environment,
        r.rule,
        r.verdict,
        r.nodeA,
        r.nodeB,
        r.nodeC,
        r.blindJobId,
        r.tieJobId,
        r.wrongNode,
        r.similarity,
      ],
    );
    return (res.rowCount ?? 0) === 1;
  }

  /**
   * Locks the node's registry row until the transaction ends: two verdicts against one node then count its
   * failures one after the other (each sees the other's row), so neither misses the ban threshold.
   */
  async lockNode(tx: PoolClient, nodeAddress: string): Promise<void> {
    await tx.query('select 1 from nodes where address = $1 for update', [nodeAddress]);
  }

  /** Checks the node was found wrong on (a tie-break decided against it). */
  async countWrong(db: Queryable, nodeAddress: string): Promise<number> {
    const r = await db.query<{ n: number }>(
      'select count(*)::int as n from qc_checks where wrong_node = $1',
      [nodeAddress],
    );
    return r.rows[0]?.n ?? 0;
  }

  async findVerdict(db: Queryable, jobId: string): Promise<QcCheckRow | undefined> {
    const r = await db.query<{
      job_id: string;
      namespace_id: string;
      model: string;
      environment: Environment;
      rule: 'exact' | 'similarity';
      verdict: QcVerdict;
      node_a: string;
      node_b: string;
      node_c: string | null;
      blind_job_id: string;
      tie_job_id: string | null;
      wrong_node: string | null;
      similarity: number;
    }>('select * from qc_checks where job_id = $1', [jobId]);
    const x = r.rows[0];
    if (!x) return undefined;
    return {
      jobId: x.job_id,
      namespaceId: x.namespace_id,
      model: x.model,
      environment: x.environment,
      rule: x.rule,
      verdict: x.verdict,
      nodeA: x.node_a,
      nodeB: x.node_b,
      nodeC: x.node_c,
      blindJobId: x.blind_job_id,
      tieJobId: x.tie_job_id,
      wrongNode: x.wrong_node,
      similarity: x.similarity,
    };
  }
}
