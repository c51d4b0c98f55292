// Rolls finished jobs and ledger activity older than the detail window into hashed daily aggregates (one transaction
// per month-aligned chunk, so a crash leaves no partial day), and prunes job partitions that are rolled up and archived.
import type { Logger } from '../../platform/logger.js';
import type { Clock } from '../../platform/clock.js';
import { withTransaction, type Pool } from '../../stores/postgres/pool.js';
import type { AuditService } from '../audit/index.js';
import { encodeRow, jobRollupsSpec, ledgerRollupsSpec, periodHash, rowValues } from '../canonical/index.js';
import { addDays, cutoffDay, dayOf, dayStart, monthChunks } from './rollup.js';
import { RollupsRepository, type Totals } from './rollups.repository.js';

export interface RollupOptions {
  detailWindowDays: number;
  maxDaysPerTransaction: number;
}

export interface Progress {
  stage: string;
  done: number;
  total: number;
  detail?: string;
}
/** Called between steps; a throw aborts the step's transaction (tests use it to simulate a crash). */
export type ProgressFn = (p: Progress) => void | Promise<void>;

export interface RollupResult {
  days: number;
  jobGroups: number;
  ledgerGroups: number;
  jobs: bigint;
  firstDay: string | undefined;
  lastDay: string | undefined;
}

export interface PruneResult {
  pruned: Array<{ partition: string; totals: Totals; snapshotCid: string }>;
  kept: Array<{ partition: string; reason: string }>;
}

/**
 * Re-reads the archive for [fromDay, toDay): the covering snapshot (verified against its pinned CID) with the rolled-up
 * days and job rollup totals it holds for them, or the reason there is none.
 */
export type ArchivedCover = (
  fromDay: string,
  toDay: string,
) => Promise<
  { cid: string; days: number; jobs: bigint; tokens: bigint; credits: bigint } | { reason: string }
>;

export class RollupsService {
  private readonly repo = new RollupsRepository();

  constructor(
    private readonly deps: {
      pool: Pool;
      log: Logger;
      clock: Clock;
      options: RollupOptions;
      audit: AuditService;
    },
  ) {}

  /** Rolls up every day not yet rolled that ended before the detail window; re-running it changes nothing. */
  async rollUp(
    opts: { signal?: AbortSignal; onProgress?: ProgressFn; throughDay?: string } = {},
  ): Promise<RollupResult> {
    const { pool, options } = this.deps;
    const cutoff = opts.throughDay
      ? addDays(opts.throughDay, 1)
      : cutoffDay(this.deps.clock.now(), options.detailWindowDays);
    const last = await this.repo.lastRolledDay(pool);
    const from = last ? addDays(last, 1) : await this.repo.firstDetailDay(pool);
    const result: RollupResult = {
      days: 0,
      jobGroups: 0,
      ledgerGroups: 0,
      jobs: 0n,
      firstDay: undefined,
      lastDay: undefined,
    };
    if (!from || from >= cutoff) return result;
    const chunks = monthChunks(from, cutoff, options.maxDaysPerTransaction);
    for (const [i, chunk] of chunks.entries()) {
      if (opts.signal?.aborted) break;
      const r = await withTransaction(pool, async (tx) => {
        await this.repo.lock(tx);
        // Another runner may have rolled this chunk since we looked: then it is done, not done twice.
        if ((await this.repo.rolledDays(tx, chunk.from, chunk.to)).length > 0) return undefined;
        const jobGroups = await this.repo.aggregateJobs(tx, dayStart(chunk.from), dayStart(chunk.to));
        const ledgerGroups = await this.repo.aggregateLedger(tx, dayStart(chunk.from), dayStart(chunk.to));
        await opts.onProgress?.({ stage: 'aggregated', done: i, total: chunks.length, detail: chunk.from });
        const periods = await this.hashPeriods(tx, chunk.from, chunk.to);
        await this.repo.insertPeriods(tx, periods);
        await opts.onProgress?.({ stage: 'hashed', done: i, total: chunks.length, detail: chunk.from });
        return {
          jobGroups,
          ledgerGroups,
          days: periods.length,
          jobs: periods.reduce((s, p) => s + p.jobs, 0n),
        };
      });
      await opts.onProgress?.({ stage: 'committed', done: i + 1, total: chunks.length, detail: chunk.from });
      if (!r) continue;
      result.days += r.days;
      result.jobGroups += r.jobGroups;
      result.ledgerGroups += r.ledgerGroups;
      result.jobs += r.jobs;
      result.firstDay ??= chunk.from;
      result.lastDay = addDays(chunk.to, -1);
    }
    if (result.days > 0) this.deps.log.info({ ...result, jobs: result.jobs.toString() }, 'rolled up');
    return result;
  }

  /** Recomputes each stored period's hash from its stored rows; lists the days whose hash differs. */
  async verifyPeriods(from = '0001-01-01', to = '9999-12-31'): Promise<{ days: number; bad: string[] }> {
    return withTransaction(
      this.deps.pool,
      async (tx) => {
        const stored = await this.repo.periods(tx, from, to);
        const days = stored.map((p) => p.day);
        const fresh = new Map((await this.hashPeriods(tx, from, to, days)).map((p) => [p.day, p.hash]));
        const bad = stored.filter((p) => !fresh.get(p.day)?.equals(p.hash)).map((p) => p.day);
        return { days: stored.length, bad };
      },
      'repeatable read',
    );
  }

  /** Hash per day of [from, to) (or of `only` those days): an empty day gets the empty-tree root. */
  private async hashPeriods(
    tx: Parameters<RollupsRepository['jobRollupRows']>[0],
    from: string,
    to: string,
    only?: string[],
  ) {
    const byDay = new Map<string, { job: Uint8Array[]; ledger: Uint8Array[]; jobs: bigint }>();
    const slot = (d: string) => {
      let s = byDay.get(d);
      if (!s) byDay.set(d, (s = { job: [], ledger: [], jobs: 0n }));
      return s;
    };
    for (const row of await this.repo.jobRollupRows(tx, from, to)) {
      const v = rowValues(jobRollupsSpec, row);
      const s = slot(v[0] as string);
      s.job.push(encodeRow(v));
      s.jobs += v[5] as bigint;
    }
    for (const row of await this.repo.ledgerRollupRows(tx, from, to)) {
      const v = rowValues(ledgerRollupsSpec, row);
      slot(v[0] as string).ledger.push(encodeRow(v));
    }
    const out = [];
    for (const d of only ?? enumerate(from, to)) {
      const s = byDay.get(d) ?? { job: [], ledger: [], jobs: 0n };
      out.push({
        day: d,
        jobGroups: s.job.length,
        ledgerGroups: s.ledger.length,
        jobs: s.jobs,
        hash: periodHash(s.job, s.ledger),
      });
    }
    return out;
  }

  /**
   * Drops each monthly job partition whose every day is in a hashed rollup and inside an archived, verified snapshot,
   * after proving that its detail totals equal the rollup totals; anything else is kept with the reason.
   */
  async prunePartitions(archivedCover: ArchivedCover, onProgress?: ProgressFn): Promise<PruneResult> {
    const { pool } = this.deps;
    const out: PruneResult = { pruned: [], kept: [] };
    const parts = await this.repo.jobPartitions(pool);
    const rolled = await this.rolledRange();
    for (const [i, p] of parts.entries()) {
      await onProgress?.({ stage: 'prune', done: i, total: parts.length, detail: p.name });
      // Days before the first rolled day had no detail when rolling began (it starts at the oldest row); a row there
      // now would be missing from the rollup totals, which the comparison below refuses.
      const from = rolled && rolled.from > dayOf(p.from) ? rolled.from : dayOf(p.from);
      const to = dayOf(p.to);
      const expectedDays = enumerate(from, to).length;
      const rolledDays = (await this.repo.rolledDays(pool, from, to)).length;
      if (!rolled || rolledDays < expectedDays) {
        out.kept.push({
          partition: p.name,
          reason: `${expectedDays - rolledDays} of its days are not rolled up`,
        });
        continue;
      }
      const cover = await archivedCover(from, to);
      if ('reason' in cover) {
        out.kept.push({ partition: p.name, reason: cover.reason });
        continue;
      }
      const cid = cover.cid;
      // The archive must hold what is dropped: every day and the same totals as the rollups (checked below).
      if (cover.days !== expectedDays) {
        out.kept.push({
          partition: p.name,
          reason: `snapshot ${cid} holds ${cover.days} of the ${expectedDays} rolled-up days`,
        });
        continue;
      }
      const done = await withTransaction(pool, async (tx) => {
        await this.repo.lock(tx);
        // Lock the partition against writers while its totals are compared and it is dropped.
        await tx.query(`lock table "${p.name.replace(/"/g, '""')}" in share mode`);
        const detail = await this.repo.partitionTotals(tx, p.name);
        const rollup = await this.repo.rollupTotals(tx, from, to);
        if (detail.unfinished > 0n) return `${detail.unfinished} jobs are not finished`;
        if (
          detail.jobs !== rollup.jobs ||
          detail.tokens !== rollup.tokens ||
          detail.credits !== rollup.credits
        ) {
          return `detail totals ${fmt(detail)} differ from rollup totals ${fmt(rollup)}`;
        }
        if (cover.jobs !== rollup.jobs || cover.tokens !== rollup.tokens || cover.credits !== rollup.credits)
          return `rollup totals ${fmt(rollup)} differ from those archived in snapshot ${cid} ${fmt(cover)}`;
        await this.repo.dropPartition(tx, p, rollup, cid);
        await this.deps.audit.append(
          {
            actor: 'system:rollups',
            action: 'jobs.partition.prune',
            target: p.name,
            body: { ...strTotals(rollup), snapshotCid: cid },
          },
          tx,
        );
        return rollup;
      });
      if (typeof done === 'string') out.kept.push({ partition: p.name, reason: done });
      else out.pruned.push({ partition: p.name, totals: done, snapshotCid: cid });
    }
    return out;
  }

  /** Totals kept in rollups for [from, to) (what pruning must preserve). */
  rollupTotals(from: string, to: string): Promise<Totals> {
    return this.repo.rollupTotals(this.deps.pool, from, to);
  }

  async rolledRange(): Promise<{ from: string; to: string } | undefined> {
    const r = await this.deps.pool.query<{ f: string | null; t: string | null }>(
      'select min(day)::text as f, max(day)::text as t from rollup_periods',
    );
    const row = r.rows[0];
    return row?.f && row.t ? { from: row.f, to: row.t } : undefined;
  }
}

function enumerate(from: string, to: string): string[] {
  const out: string[] = [];
  for (let d = from; d < to; d = addDays(d, 1)) out.push(d);
  return out;
}

const strTotals = (t: Totals) => ({
  jobs: t.jobs.toString(),
  tokens: t.tokens.toString(),
  credits: t.credits.toString(),
});
const fmt = (t: Totals) => JSON.stringify(strTotals(t));

/** The recurring task (shape of background/task-runner RecurringTask): one rollup pass per interval. */
export function createRollupTask(service: RollupsService, intervalMs: number) {
  return {
    name: 'rollup',
    intervalMs,
    run: (signal: AbortSignal) => service.rollUp({ signal }),
  };
}
