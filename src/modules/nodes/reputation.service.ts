// Measured reputation, the moving parts: observations are added in memory on the job path (no I/O there),
// flushed every REPUTATION_FLUSH_INTERVAL_MS in one PostgreSQL statement (decay, then add), scored from the
// rows that statement returns, and mirrored into the Redis matchmaking score in one script call per cell.
import type { Environment } from '../../config/vocabulary.js';
import type { Logger } from '../../platform/logger.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { LiveStore } from './live.store.js';
import {
  addObservation,
  decaySums,
  emptySums,
  partsOf,
  PRIOR_SCORE,
  PROBATION_JOBS,
  scoreOf,
  type Observation,
  type ReputationParts,
  type ReputationSums,
} from './reputation.js';
import { ReputationRepository } from './reputation.repository.js';

/** What an admin sees of a node's reputation. */
export interface ReputationView {
  score: number;
  probation: boolean;
  /** Attempts observed ever; probation ends at PROBATION_JOBS. */
  attempts: number;
  /** True when nothing was observed yet: the score is the prior. */
  prior: boolean;
  parts: ReputationParts;
  asOf: string | null;
}

interface Pending {
  environment: Environment;
  attempts: number;
  sums: ReputationSums;
}

function mergeInto(into: ReputationSums, add: ReputationSums): void {
  for (const k of Object.keys(add) as Array<keyof ReputationSums>) into[k] += add[k];
}

export class ReputationService {
  private readonly repo = new ReputationRepository();
  private readonly log: Logger;
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly deps: { pool: Pool; live: LiveStore; log: Logger; flushIntervalMs: number }) {
    this.log = deps.log.child({ component: 'reputation' });
  }

  /** Records one observation of a node (synchronous, in memory); a flush is scheduled if none is. */
  observe(environment: Environment, nodeAddress: string, o: Observation): void {
    let p = this.pending.get(nodeAddress);
    if (!p) {
      p = { environment, attempts: 0, sums: emptySums() };
      this.pending.set(nodeAddress, p);
    }
    if (o.kind !== 'qc') p.attempts += 1;
    addObservation(p.sums, o);
    this.schedule();
  }

  /** Writes what was observed since the last flush and mirrors the new scores. A failed write is kept for the next. */
  async flush(): Promise<void> {
    if (this.flushing) await this.flushing;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = this.write(batch).finally(() => (this.flushing = undefined));
    await this.flushing;
  }

  private async write(batch: Map<string, Pending>): Promise<void> {
    let rows;
    try {
      rows = await this.repo.addDeltas(
        this.deps.pool,
        [...batch].map(([nodeAddress, p]) => ({ nodeAddress, attempts: p.attempts, sums: p.sums })),
      );
    } catch (err) {
      // Kept for the next flush (merged with what arrived meanwhile): a store outage delays scores and loses
      // nothing unless the process stops before the store is back.
      for (const [addr, p] of batch) {
        const cur = this.pending.get(addr);
        if (cur) {
          cur.attempts += p.attempts;
          mergeInto(cur.sums, p.sums);
        } else this.pending.set(addr, p);
      }
      this.log.warn({ err, nodes: batch.size }, 'reputation flush failed; retried with the next');
      this.schedule();
      return;
    }
    // The sums are in; a failure from here on only delays the mirrored score until the node's next flush.
    try {
      const scores = rows.map((r) => ({
        nodeAddress: r.nodeAddress,
        score: scoreOf(partsOf(r.sums)),
        probation: r.attempts < PROBATION_JOBS,
      }));
      await this.repo.saveScores(this.deps.pool, scores);
      await this.deps.live.mirrorReputation(
        scores.map((s) => ({
          environment: batch.get(s.nodeAddress)!.environment,
          address: s.nodeAddress,
          score: s.score,
          probation: s.probation,
        })),
      );
    } catch (err) {
      this.log.warn({ err, nodes: batch.size }, 'reputation scores not mirrored');
    }
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.deps.flushIntervalMs);
    this.timer.unref();
  }

  /** Flushes what is pending and stops scheduling. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  /** A node's reputation now (its sums decayed to this moment), or the prior when never observed. */
  async view(nodeAddress: string): Promise<ReputationView> {
    const row = (await this.repo.find(this.deps.pool, [nodeAddress])).get(nodeAddress);
    if (!row)
      return {
        score: PRIOR_SCORE,
        probation: true,
        attempts: 0,
        prior: true,
        parts: partsOf(emptySums()),
        asOf: null,
      };
    const parts = partsOf(decaySums(row.sums, Date.now() - row.asOf.getTime()));
    return {
      score: scoreOf(parts),
      probation: row.attempts < PROBATION_JOBS,
      attempts: row.attempts,
      prior: false,
      parts,
      asOf: new Date().toISOString(),
    };
  }
}
