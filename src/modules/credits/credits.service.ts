// The credit ledger: two-phase holds with group commit. Each operation keeps its own result and idempotency;
// many operations share one PostgreSQL transaction.
import { isAddress, isUuid } from '../../config/vocabulary.js';
import { AppError, isAppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import { GroupCommitter, type Outcome } from '../../platform/group-commit.js';
import { withTransaction, type Pool, type PoolClient } from '../../stores/postgres/pool.js';
import { CreditsRepository, type BalanceView, type LedgerMismatch } from './credits.repository.js';
import {
  applyOp,
  idemKeyOf,
  jobOf,
  namespaceOf,
  nodeOf,
  toMicro,
  type LedgerOp,
  type OpResult,
} from './ledger.js';
import { qcExtraKeysOf, qcLocksNode, type QcLedgerOp } from './ledger-qc.js';

export interface LedgerOptions {
  /** Bounded wait for a batch to fill; 0 with maxSize 1 disables batching. */
  batchMaxWaitMs: number;
  batchMaxSize: number;
  batchConcurrency: number;
  holdTimeoutMs: number;
  /** Node earnings younger than this are held back: no payout includes them (default 7 days). */
  nodeEarningsHoldBackMs?: number;
}

export const DEFAULT_NODE_EARNINGS_HOLD_BACK_MS = 7 * 24 * 3_600_000;

type ResultOf<K extends OpResult['kind']> = OpResult extends infer R
  ? R extends { kind: infer RK }
    ? K extends RK
      ? R & { kind: K }
      : never
    : never
  : never;

function requireId(value: string, name: string, valid: (v: unknown) => boolean = isUuid): string {
  if (!valid(value)) throw new AppError('invalid_request', `${name} is not a valid id: ${String(value)}`);
  return value;
}

function requireKey(value: string): string {
  // Printable characters only: a NUL byte would fail the whole shared batch statement in PostgreSQL.
  if (typeof value !== 'string' || !/^[\x20-\x7e\u00a0-\uffff]{1,200}$/.test(value)) {
    throw new AppError('invalid_request', 'idempotency key must be 1-200 printable characters');
  }
  return value;
}

function requireDate(value: Date | undefined, name: string): Date | undefined {
  if (value !== undefined && (!(value instanceof Date) || !Number.isFinite(value.getTime()))) {
    throw new AppError('invalid_request', `${name} must be a valid date`);
  }
  return value;
}

function requireTimeout(ms: number): Date {
  if (!Number.isSafeInteger(ms) || ms <= 0 || ms > 365 * 24 * 3600 * 1000) {
    throw new AppError('invalid_request', 'holdTimeoutMs must be a positive integer of at most one year');
  }
  return new Date(Date.now() + ms);
}

/** Errors after which re-running the batch from fresh state is the right answer. */
export function isBatchRace(err: unknown): boolean {
  if (isAppError(err, 'already_exists')) return true;
  return (
    isAppError(err, 'store_unavailable') &&
    (err.details?.sqlstate === '40P01' || err.details?.sqlstate === 'hold_race')
  );
}

export class LedgerService {
  private readonly pool: Pool;
  private readonly log: Logger;
  private readonly opts: LedgerOptions;
  private readonly repo = new CreditsRepository();
  private readonly committer: GroupCommitter<LedgerOp, OpResult>;

  constructor(deps: { pool: Pool; log: Logger; options: LedgerOptions }) {
    this.pool = deps.pool;
    this.log = deps.log.child({ component: 'ledger' });
    this.opts = deps.options;
    this.committer = new GroupCommitter(
      {
        maxWaitMs: deps.options.batchMaxWaitMs,
        maxSize: deps.options.batchMaxSize,
        concurrency: deps.options.batchConcurrency,
      },
      (ops) => this.commitBatch(ops),
    );
  }

  async topUp(namespaceId: string, amount: bigint | number, idemKey: string): Promise<ResultOf<'topup'>> {
    return this.submit<'topup'>({
      kind: 'topup',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      amount: toMicro(amount, 'amount'),
      idemKey: requireKey(idemKey),
    });
  }

  async grantBonus(
    namespaceId: string,
    amount: bigint | number,
    idemKey: string,
    expiresAt?: Date,
  ): Promise<ResultOf<'bonus'>> {
    return this.submit<'bonus'>({
      kind: 'bonus',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      amount: toMicro(amount, 'amount'),
      idemKey: requireKey(idemKey),
      expiresAt: requireDate(expiresAt, 'expiresAt'),
    });
  }

  /** Holds up to `maxCost` for a job; never lets available go below zero (402 `insufficient_credits`). */
  async reserve(
    namespaceId: string,
    jobId: string,
    maxCost: bigint | number,
    holdTimeoutMs = this.opts.holdTimeoutMs,
  ): Promise<ResultOf<'reserve'>> {
    return this.submit<'reserve'>({
      kind: 'reserve',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      jobId: requireId(jobId, 'jobId'),
      amount: toMicro(maxCost, 'maxCost'),
      expiresAt: requireTimeout(holdTimeoutMs),
    });
  }

  /** Posts the actual cost (≤ the hold) and releases the rest. Repeating it with the same amount is a no-op. */
  async settle(namespaceId: string, jobId: string, actualCost: bigint | number): Promise<ResultOf<'settle'>> {
    return this.submit<'settle'>({
      kind: 'settle',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      jobId: requireId(jobId, 'jobId'),
      actual: toMicro(actualCost, 'actualCost', { allowZero: true }),
    });
  }

  /** Releases the whole hold (failed, expired or cancelled job). */
  async void(namespaceId: string, jobId: string): Promise<ResultOf<'void'>> {
    return this.submit<'void'>({
      kind: 'void',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      jobId: requireId(jobId, 'jobId'),
    });
  }

  async chargeStorage(
    namespaceId: string,
    amount: bigint | number,
    idemKey: string,
  ): Promise<ResultOf<'storage_charge'>> {
    return this.submit<'storage_charge'>({
      kind: 'storage_charge',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      amount: toMicro(amount, 'amount'),
      idemKey: requireKey(idemKey),
    });
  }

  /** Credits a node operator for a settled job (at most the job's settled charge). */
  async creditEarning(
    nodeAddress: string,
    jobId: string,
    amount: bigint | number,
  ): Promise<ResultOf<'earning'>> {
    return this.submit<'earning'>({
      kind: 'earning',
      nodeAddress: requireId(nodeAddress, 'nodeAddress', isAddress),
      jobId: requireId(jobId, 'jobId'),
      amount: toMicro(amount, 'amount'),
    });
  }

  async payout(nodeAddress: string, amount: bigint | number, idemKey: string): Promise<ResultOf<'payout'>> {
    return this.submit<'payout'>({
      kind: 'payout',
      nodeAddress: requireId(nodeAddress, 'nodeAddress', isAddress),
      amount: toMicro(amount, 'amount'),
      idemKey: requireKey(idemKey),
    });
  }

  getBalance(namespaceId: string): Promise<BalanceView | undefined> {
    return this.repo.getBalance(this.pool, requireId(namespaceId, 'namespaceId'));
  }

  getHold(namespaceId: string, jobId: string) {
    return this.repo.getHold(this.pool, requireId(namespaceId, 'namespaceId'), requireId(jobId, 'jobId'));
  }

  /** Recomputes all balances and holds from the entries; an empty list means the ledger is consistent. */
  verifyLedger(): Promise<LedgerMismatch[]> {
    return withTransaction(this.pool, (tx) => this.repo.findMismatches(tx), 'repeatable read');
  }

  /**
   * Releases holds past their expiry; returns how many were released. Safe to run on several processes.
   * An aborted `signal` (the task's lock lost, or stopping) releases nothing more.
   */
  async expireHolds(now = new Date(), limit = 1000, signal?: AbortSignal): Promise<number> {
    const due = await this.repo.findExpiredHolds(this.pool, now, limit);
    if (signal?.aborted) return 0;
    const results = await Promise.allSettled(
      due.map((d) => this.submit({ kind: 'hold_expire', namespaceId: d.namespaceId, jobId: d.jobId })),
    );
    return this.countSwept('expire-holds', results);
  }

  async expireBonuses(now = new Date(), limit = 1000, signal?: AbortSignal): Promise<number> {
    const due = await this.repo.findExpiredBonuses(this.pool, now, limit);
    if (signal?.aborted) return 0;
    const results = await Promise.allSettled(due.map((d) => this.submit({ kind: 'bonus_expire', ...d })));
    return this.countSwept('expire-bonuses', results);
  }

  /** A hold closed since it was listed, or a bonus still held, is expected; anything else is logged. */
  private countSwept(task: string, results: Array<PromiseSettledResult<OpResult>>): number {
    let done = 0;
    for (const r of results) {
      if (r.status === 'fulfilled') done += r.value.replayed ? 0 : 1;
      else if (!isAppError(r.reason, 'hold_not_pending') && !isAppError(r.reason, 'bonus_held')) {
        this.log.warn({ err: r.reason, task }, 'sweeper operation failed; retried on the next run');
      }
    }
    return done;
  }

  /**
   * The ledger's part of a caller's unit of work: loads and locks what `ops` touch, applies them in order
   * (each keeps its own outcome) and writes the result, inside the caller's transaction. The caller commits
   * (and re-runs the whole unit on isBatchRace). Build the operations with `ops` (it validates them).
   */
  readonly ops = {
    reserve: (namespaceId: string, jobId: string, maxCost: bigint, holdTimeoutMs: number): LedgerOp => ({
      kind: 'reserve',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      jobId: requireId(jobId, 'jobId'),
      amount: toMicro(maxCost, 'maxCost'),
      expiresAt: requireTimeout(holdTimeoutMs),
    }),
    settle: (namespaceId: string, jobId: string, actualCost: bigint): LedgerOp => ({
      kind: 'settle',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      jobId: requireId(jobId, 'jobId'),
      actual: toMicro(actualCost, 'actualCost', { allowZero: true }),
    }),
    void: (namespaceId: string, jobId: string): LedgerOp => ({
      kind: 'void',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      jobId: requireId(jobId, 'jobId'),
    }),
    storageCharge: (namespaceId: string, amount: bigint, idemKey: string): LedgerOp => ({
      kind: 'storage_charge',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      amount: toMicro(amount, 'amount'),
      idemKey: requireKey(idemKey),
    }),
    earning: (nodeAddress: string, jobId: string, amount: bigint): LedgerOp => ({
      kind: 'earning',
      nodeAddress: requireId(nodeAddress, 'nodeAddress', isAddress),
      jobId: requireId(jobId, 'jobId'),
      amount: toMicro(amount, 'amount'),
    }),
    /** Spot checks (see ledger-qc.ts): the network pays for a blind copy; a node found wrong loses the job. */
    networkExpense: (nodeAddress: string, blindJobId: string, amount: bigint): LedgerOp => ({
      kind: 'network_expense',
      nodeAddress: requireId(nodeAddress, 'nodeAddress', isAddress),
      jobId: requireId(blindJobId, 'blindJobId'),
      amount: toMicro(amount, 'amount'),
    }),
    refund: (namespaceId: string, jobId: string): LedgerOp => ({
      kind: 'refund',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      jobId: requireId(jobId, 'jobId'),
    }),
    earningReversal: (nodeAddress: string, jobId: string, of: 'earning' | 'network_expense'): LedgerOp => ({
      kind: 'earning_reversal',
      nodeAddress: requireId(nodeAddress, 'nodeAddress', isAddress),
      jobId: requireId(jobId, 'jobId'),
      of,
    }),
    forfeit: (nodeAddress: string, idemKey: string): LedgerOp => ({
      kind: 'forfeit',
      nodeAddress: requireId(nodeAddress, 'nodeAddress', isAddress),
      idemKey: requireKey(idemKey),
    }),
  };

  async applyInTransaction(tx: PoolClient, ops: LedgerOp[]): Promise<Array<Outcome<OpResult>>> {
    const holdBackMs = this.opts.nodeEarningsHoldBackMs ?? DEFAULT_NODE_EARNINGS_HOLD_BACK_MS;
    const state = await this.repo.loadBatch(tx, collectIds(ops), new Date(), holdBackMs);
    const outcomes = ops.map((op): Outcome<OpResult> => {
      try {
        return { ok: true, value: applyOp(state, op) };
      } catch (error) {
        return { ok: false, error };
      }
    });
    await this.repo.writeBatch(tx, state);
    return outcomes;
  }

  /** Stops taking operations and waits for queued batches to commit. */
  stop(): Promise<void> {
    return this.committer.stop();
  }

  private submit<K extends OpResult['kind']>(
    op: LedgerOp & { kind: K | 'hold_expire' | 'bonus_expire' },
  ): Promise<ResultOf<K>> {
    return this.committer.submit(op) as Promise<ResultOf<K>>;
  }

  /**
   * One transaction for the whole batch. A race with another batch (unique key, deadlock, a hold closed under
   * us) re-runs it from fresh state. Any other database error re-runs the operations one by one, so that one
   * bad operation cannot fail the others that shared its transaction.
   */
  private async commitBatch(ops: LedgerOp[]): Promise<Array<Outcome<OpResult>>> {
    try {
      return await this.commitWithRetry(ops);
    } catch (err) {
      if (ops.length === 1 || isRetryableStoreError(err)) throw err;
      this.log.warn({ err, ops: ops.length }, 'ledger batch failed; re-running its operations one by one');
      return Promise.all(
        ops.map(async (op): Promise<Outcome<OpResult>> => {
          try {
            const [one] = await this.commitWithRetry([op]);
            return one!;
          } catch (error) {
            return { ok: false, error };
          }
        }),
      );
    }
  }

  private async commitWithRetry(ops: LedgerOp[]): Promise<Array<Outcome<OpResult>>> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await withTransaction(this.pool, (tx) => this.applyInTransaction(tx, ops));
      } catch (err) {
        if (!isBatchRace(err)) throw err;
        if (attempt >= 5) {
          throw new AppError(
            'store_unavailable',
            'ledger batch kept racing with concurrent batches; retry',
            undefined,
            { cause: err },
          );
        }
        this.log.debug({ attempt }, 'ledger batch raced with another; re-running it');
      }
    }
  }
}

function isRetryableStoreError(err: unknown): boolean {
  return isAppError(err, 'store_unavailable');
}

function isQcOp(op: LedgerOp): op is QcLedgerOp {
  return (
    op.kind === 'network_expense' ||
    op.kind === 'refund' ||
    op.kind === 'earning_reversal' ||
    op.kind === 'forfeit'
  );
}

function collectIds(ops: LedgerOp[]) {
  const namespaceIds = new Set<string>();
  const nodeAddresses = new Set<string>();
  const jobIds = new Set<string>();
  const idemKeys = new Set<string>();
  for (const op of ops) {
    const ns = namespaceOf(op);
    if (ns) namespaceIds.add(ns);
    // Only a payout reads a node's totals (it may not exceed what is unpaid): earnings are added as deltas, so a
    // batch of settles and earnings locks no node row before its one upsert.
    const node = nodeOf(op);
    const qc = isQcOp(op);
    if (node && (op.kind === 'payout' || (qc && qcLocksNode(op)))) nodeAddresses.add(node);
    const job = jobOf(op);
    if (job) jobIds.add(job);
    idemKeys.add(idemKeyOf(op));
    if (qc) for (const k of qcExtraKeysOf(op)) idemKeys.add(k);
  }
  return {
    namespaceIds: [...namespaceIds].sort(),
    nodeAddresses: [...nodeAddresses].sort(),
    jobIds: [...jobIds],
    idemKeys: [...idemKeys],
  };
}
