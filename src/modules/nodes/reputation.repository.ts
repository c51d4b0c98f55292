// node_reputation: the decayed sums of each node, updated by one statement per flush (decay then add).
import type { Queryable } from '../../stores/postgres/pool.js';
import { PRIOR_SCORE, REPUTATION_HALF_LIFE_MS as H, type ReputationSums } from './reputation.js';

export interface ReputationRow {
  nodeAddress: string;
  asOf: Date;
  attempts: number;
  sums: ReputationSums;
  score: number;
  probation: boolean;
}

const sumColumns = [
  ['ok', 'ok', H.outcomes],
  ['failError', 'fail_error', H.outcomes],
  ['failTimeout', 'fail_timeout', H.outcomes],
  ['failDisconnect', 'fail_disconnect', H.outcomes],
  ['latencySumMs', 'latency_sum_ms', H.speed],
  ['latencyN', 'latency_n', H.speed],
  ['tokens', 'tokens', H.speed],
  ['tokenSeconds', 'token_seconds', H.speed],
  ['validOk', 'valid_ok', H.validity],
  ['validN', 'valid_n', H.validity],
] as const;

type Raw = Record<string, string | number | boolean | Date>;

function rowOf(r: Raw): ReputationRow {
  const sums = Object.fromEntries(
    sumColumns.map(([k, col]) => [k, Number(r[col])]),
  ) as unknown as ReputationSums;
  return {
    nodeAddress: String(r.node_address),
    asOf: new Date(r.as_of as Date),
    attempts: Number(r.attempts),
    sums,
    score: Number(r.score),
    probation: Boolean(r.probation),
  };
}

export class ReputationRepository {
  /**
   * Decays each node's stored sums to now and adds its delta, in one statement for the batch; returns the
   * new rows (with every process's flushes in them) for the caller to score. New rows start at the delta.
   */
  async addDeltas(
    db: Queryable,
    deltas: Array<{ nodeAddress: string; attempts: number; sums: ReputationSums }>,
  ): Promise<ReputationRow[]> {
    if (deltas.length === 0) return [];
    const params: unknown[] = [deltas.map((d) => d.nodeAddress), deltas.map((d) => d.attempts)];
    for (const [k] of sumColumns) params.push(deltas.map((d) => d.sums[k]));
    const cols = sumColumns.map(([, col]) => col);
    const unnest = cols.map((_, i) => `$${i + 3}::float8[]`).join(', ');
    // Decay factor per column: 0.5 ^ (ms since as_of / half-life).
    const decayed = sumColumns
      .map(
        ([, col, h]) =>
          `${col} = node_reputation.${col} * power(0.5, greatest(0, extract(epoch from (now() - node_reputation.as_of)) * 1000) / ${h}) + excluded.${col}`,
      )
      .join(',\n         ');
    const r = await db.query<Raw>(
      `insert into node_reputation (node_address, as_of, attempts, ${cols.join(', ')}, score, probation)
       select v.node, now(), v.attempts, ${cols.map((c) => `v.${c}`).join(', ')}, ${PRIOR_SCORE}, true
         from unnest($1::text[], $2::bigint[], ${unnest}) as v(node, attempts, ${cols.join(', ')})
       on conflict (node_address) do update set
         ${decayed},
         attempts = node_reputation.attempts + excluded.attempts,
         as_of = now(), updated_at = now()
       returning *`,
      params,
    );
    return r.rows.map(rowOf);
  }

  /** Records the score and probation state mirrored from these rows. */
  async saveScores(
    db: Queryable,
    scores: Array<{ nodeAddress: string; score: number; probation: boolean }>,
  ): Promise<void> {
    if (scores.length === 0) return;
    await db.query(
      `update node_reputation r set score = v.score, probation = v.probation
         from unnest($1::text[], $2::int[], $3::bool[]) as v(node, score, probation)
        where r.node_address = v.node`,
      [scores.map((s) => s.nodeAddress), scores.map((s) => s.score), scores.map((s) => s.probation)],
    );
  }

  async find(db: Queryable, addresses: string[]): Promise<Map<string, ReputationRow>> {
    if (addresses.length === 0) return new Map();
    const r = await db.query<Raw>('select * from node_reputation where node_address = any($1::text[])', [
      addresses,
    ]);
    return new Map(r.rows.map((x) => [String(x.node_address), rowOf(x)]));
  }
}
