// The job path's two group-committed PostgreSQL transactions: submit (reservation + job row) and finish
// (settle or void, node earning, terminal row, compact result), each shared by many jobs, plus the batched
// after-commit marks (published, recorded). Each job keeps its own outcome inside a batch.
//
// Why a unit of work: the ledger and the job rows are two modules with their own SQL (credits owns balances,
// holds and entries; jobs owns job rows and results), but a job's money and its row must change in one
// transaction — otherwise a crash between them leaves a hold without a row, or a settled job without its
// earning or terminal state. So one transaction client is handed to both: the ledger applies its operations
// in it (`applyInTransaction`), then the jobs repository writes the rows of exactly the jobs whose ledger
// operation went through, and the unit commits once for the whole batch.
import { AppError, isAppError } from '../../platform/errors.js';
import { GroupCommitter, type Outcome } from '../../platform/group-commit.js';
import type { Logger } from '../../platform/logger.js';
import { withTransaction, type Pool, type PoolClient } from '../../stores/postgres/pool.js';
import { isBatchRace, type LedgerOp, type LedgerService, type OpResult } from '../credits/index.js';
import { JobsRepository, type JobRowInput, type TerminalRowInput } from './jobs.repository.js';

export interface SubmitItem {
  row: JobRowInput;
  reserve: LedgerOp;
}
/** created: false when the job id was reserved before (an idempotent replay): nothing new was written. */
export interface SubmitCommitted {
  created: boolean;
}

export interface FinishItem {
  /** The operation that closes the hold (settle or void) first; an earning may follow it. */
  ops: LedgerOp[];
  terminal: TerminalRowInput;
}
/**
 * closed: this unit closed the job (its hold operation went through and the row moved now); otherwise `by`
 * says why not: the hold was closed the other way ('other'), or the row was already terminal ('done').
 */
export type FinishCommitted =
  | { closed: true; hold: OpResult }
  | { closed: false; by: 'other' | 'done'; error?: unknown };

export interface JobCommitOptions {
  maxBatch: number;
  concurrency: number;
  /** The after-commit marks wait this long to share a statement (off the request path). */
  markWaitMs: number;
}

export const defaultJobCommitOptions: JobCommitOptions = { maxBatch: 500, concurrency: 2, markWaitMs: 100 };

type Mark = { kind: 'published'; id: string; createdAt: Date } | { kind: 'recorded'; id: string };

export class JobCommits {
  private readonly repo = new JobsRepository();
  private readonly submits: GroupCommitter<SubmitItem, SubmitCommitted>;
  private readonly finishes: GroupCommitter<FinishItem, FinishCommitted>;
  private readonly marks: GroupCommitter<Mark, void>;
  /** Statements and commits issued (for the per-job counts the benchmarks print). */
  readonly stats = { submitTx: 0, finishTx: 0, markTx: 0, submitJobs: 0, finishJobs: 0 };

  constructor(
    private readonly deps: {
      pool: Pool;
      ledger: LedgerService;
      log: Logger;
      options?: Partial<JobCommitOptions>;
    },
  ) {
    const o = { ...defaultJobCommitOptions, ...deps.options };
    const batch = { maxWaitMs: 0, maxSize: o.maxBatch, concurrency: o.concurrency, flushWhenIdle: true };
    this.submits = new GroupCommitter(batch, (items) =>
      this.unit(items, (tx, b) => this.writeSubmits(tx, b)),
    );
    this.finishes = new GroupCommitter(batch, (items) =>
      this.unit(items, (tx, b) => this.writeFinishes(tx, b)),
    );
    this.marks = new GroupCommitter({ maxWaitMs: o.markWaitMs, maxSize: 2000, concurrency: 1 }, (items) =>
      this.writeMarks(items),
    );
  }

  submit(item: SubmitItem): Promise<SubmitCommitted> {
    return this.submits.submit(item);
  }

  finish(item: FinishItem): Promise<FinishCommitted> {
    return this.finishes.submit(item);
  }

  /** Best effort: a lost mark only makes the recovery task look at the job again. */
  mark(m: Mark): void {
    this.marks
      .submit(m)
      .catch((err: unknown) => this.deps.log.warn({ err, jobId: m.id }, 'job mark not written'));
  }

  async stop(): Promise<void> {
    await Promise.allSettled([this.submits.stop(), this.finishes.stop()]);
    await this.marks.stop();
  }

  private async writeSubmits(tx: PoolClient, items: SubmitItem[]): Promise<Array<Outcome<SubmitCommitted>>> {
    this.stats.submitTx += 1;
    this.stats.submitJobs += items.length;
    const held = await this.deps.ledger.applyInTransaction(
      tx,
      items.map((i) => i.reserve),
    );
    // Only a reservation made now gets a row: a replayed one belongs to a job written before.
    const fresh = items.filter((_, k) => {
      const o = held[k]!;
      return o.ok && !o.value.replayed;
    });
    await this.repo.insertJobs(
      tx,
      fresh.map((i) => i.row),
    );
    return held.map((o) => (o.ok ? { ok: true, value: { created: !o.value.replayed } } : o));
  }

  private async writeFinishes(tx: PoolClient, items: FinishItem[]): Promise<Array<Outcome<FinishCommitted>>> {
    this.stats.finishTx += 1;
    this.stats.finishJobs += items.length;
    const ops = items.flatMap((i) => i.ops);
    const outcomes = await this.deps.ledger.applyInTransaction(tx, ops);
    // The first operation of each job closes its hold and decides who owns the terminal state.
    const first: Array<Outcome<OpResult>> = [];
    let at = 0;
    for (const i of items) {
      first.push(outcomes[at]!);
      at += i.ops.length;
    }
    const rows = items.filter((i, k) => ownsRow(i, first[k]!));
    const moved = await this.repo.finishJobs(
      tx,
      rows.map((i) => i.terminal),
    );
    return items.map((i, k): Outcome<FinishCommitted> => {
      const o = first[k]!;
      if (moved.has(i.terminal.id) && o.ok) return { ok: true, value: { closed: true, hold: o.value } };
      if (moved.has(i.terminal.id))
        // A void of a job without a hold (a row from before holds were written with it): closed all the same.
        return {
          ok: true,
          value: { closed: true, hold: { kind: 'void', jobId: i.terminal.id, released: 0n, replayed: true } },
        };
      if (!o.ok && !isAppError(o.error, 'hold_not_pending') && !isAppError(o.error, 'hold_not_found'))
        return o;
      return {
        ok: true,
        value: { closed: false, by: o.ok ? 'done' : 'other', ...(o.ok ? {} : { error: o.error }) },
      };
    });
  }

  /**
   * One transaction for a batch. A race with another batch (unique key, deadlock, a hold closed under us)
   * re-runs it from fresh state; any other database error re-runs the items one by one, so that one bad item
   * cannot fail the others that shared its transaction.
   */
  private async unit<T, R>(
    items: T[],
    write: (tx: PoolClient, items: T[]) => Promise<Array<Outcome<R>>>,
  ): Promise<Array<Outcome<R>>> {
    try {
      return await this.withRetry(items, write);
    } catch (err) {
      if (items.length === 1 || isAppError(err, 'store_unavailable')) throw err;
      this.deps.log.warn({ err, items: items.length }, 'job batch failed; re-running its items one by one');
      return Promise.all(
        items.map(async (item): Promise<Outcome<R>> => {
          try {
            return (await this.withRetry([item], write))[0]!;
          } catch (error) {
            return { ok: false, error };
          }
        }),
      );
    }
  }

  private async withRetry<T, R>(
    items: T[],
    write: (tx: PoolClient, items: T[]) => Promise<Array<Outcome<R>>>,
  ): Promise<Array<Outcome<R>>> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await withTransaction(this.deps.pool, (tx) => write(tx, items));
      } catch (err) {
        if (!isBatchRace(err)) throw err;
        if (attempt >= 5)
          throw new AppError(
            'store_unavailable',
            'job batch kept racing with concurrent batches; retry',
            undefined,
            {
              cause: err,
            },
          );
      }
    }
  }

  private async writeMarks(items: Mark[]): Promise<Array<Outcome<void>>> {
    this.stats.markTx += 1;
    const published = items.flatMap((m) =>
      m.kind === 'published' ? [{ id: m.id, createdAt: m.createdAt }] : [],
    );
    const recorded = items.flatMap((m) => (m.kind === 'recorded' ? [m.id] : []));
    // Two independent autocommit statements: each is idempotent and order does not matter.
    await Promise.all([
      this.repo.markPublished(this.deps.pool, published),
      this.repo.markRecorded(this.deps.pool, recorded),
    ]);
    return items.map(() => ({ ok: true, value: undefined }));
  }
}

/**
 * Whether the terminal row is written for this job: when its hold operation went through now or earlier (a
 * replay re-drives a row left open by a crash of older code; the status predicate makes it a no-op otherwise),
 * and for a void of a job that has no hold at all. A hold closed the other way (hold_not_pending) belongs to
 * whoever closed it.
 */
function ownsRow(item: FinishItem, o: Outcome<OpResult>): boolean {
  if (o.ok) return true;
  return item.ops[0]?.kind === 'void' && isAppError(o.error, 'hold_not_found');
}
