// The credit ledger: two-phase holds with group commit. Each operation keeps its own result and idempotency;
// many operations share one PostgreSQL transaction.
import { AppError, isAppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import { GroupCommitter, type Outcome } from '../../platform/group-commit.js';
import { withTransaction, type Pool } from '../../stores/postgres/pool.js';
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

export interface LedgerOptions {
  /** Bounded wait for a batch to fill; 0 with maxSize 1 disables batching. */
  batchMaxWaitMs: number;
  batchMaxSize: number;
  batchConcurrency: number;
  holdTimeoutMs: number;
}

type ResultOf<K extends OpResult['kind']> = OpResult extends infer R
  ? R extends { kind: infer RK }
    ? K extends RK
      ? R & { kind: K }
      : never
    : never
  : never;

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const address = /^0x[0-9a-f]{40}$/;

function requireId(value: string, name: string, pattern = uuid): string {
  if (typeof value !== 'string' || !pattern.test(value))
    throw new AppError('invalid_request', `${name} is not a valid id: ${String(value)}`);
  return value;
}

function requireKey(value: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 200)
    throw new AppError('invalid_request', 'idempotency key must be 1-200 characters');
  return value;
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

  topUp(namespaceId: string, amount: bigint | number, idemKey: string): Promise<ResultOf<'topup'>> {
    return this.submit<'topup'>({
      kind: 'topup',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      amount: toMicro(amount, 'amount'),
      idemKey: requireKey(idemKey),
    });
  }

  grantBonus(
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
      expiresAt,
    });
  }

  /** Holds up to `maxCost` for a job; never lets available go below zero (402 `insufficient_credits`). */
  reserve(
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
      expiresAt: new Date(Date.now() + holdTimeoutMs),
    });
  }

  /** Posts the actual cost (≤ the hold) and releases the rest. Repeating it with the same amount is a no-op. */
  settle(namespaceId: string, jobId: string, actualCost: bigint | number): Promise<ResultOf<'settle'>> {
    return this.submit<'settle'>({
      kind: 'settle',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      jobId: requireId(jobId, 'jobId'),
      actual: toMicro(actualCost, 'actualCost', { allowZero: true }),
    });
  }

  /** Releases the whole hold (failed, expired or cancelled job). */
  void(namespaceId: string, jobId: string): Promise<ResultOf<'void'>> {
    return this.submit<'void'>({
      kind: 'void',
      namespaceId: requireId(namespaceId, 'namespaceId'),
      jobId: requireId(jobId, 'jobId'),
    });
  }

  chargeStorage(
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
  creditEarning(nodeAddress: string, jobId: string, amount: bigint | number): Promise<ResultOf<'earning'>> {
    return this.submit<'earning'>({
      kind: 'earning',
      nodeAddress: requireId(nodeAddress, 'nodeAddress', address),
      jobId: requireId(jobId, 'jobId'),
      amount: toMicro(amount, 'amount'),
    });
  }

  payout(nodeAddress: string, amount: bigint | number, idemKey: string): Promise<ResultOf<'payout'>> {
    return this.submit<'payout'>({
      kind: 'payout',
      nodeAddress: requireId(nodeAddress, 'nodeAddress', address),
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

  /** Releases holds past their expiry; returns how many were released. Safe to run on several processes. */
  async expireHolds(now = new Date(), limit = 1000): Promise<number> {
    const due = await this.repo.findExpiredHolds(this.pool, now, limit);
    const results = await Promise.allSettled(
      due.map((d) => this.submit({ kind: 'hold_expire', namespaceId: d.namespaceId, jobId: d.jobId })),
    );
    // A hold settled or voided since it was listed is not an error for the sweeper.
    return results.filter((r) => r.status === 'fulfilled' && !r.value.replayed).length;
  }

  async expireBonuses(now = new Date(), limit = 1000): Promise<number> {
    const due = await this.repo.findExpiredBonuses(this.pool, now, limit);
    const results = await Promise.allSettled(due.map((d) => this.submit({ kind: 'bonus_expire', ...d })));
    return results.filter((r) => r.status === 'fulfilled' && !r.value.replayed).length;
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

  /** One transaction for the whole batch; a unique-key race with another batch re-runs it from fresh state. */
  private async commitBatch(ops: LedgerOp[]): Promise<Array<Outcome<OpResult>>> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await withTransaction(this.pool, async (tx) => {
          const state = await this.repo.loadBatch(tx, collectIds(ops), new Date());
          const outcomes = ops.map((op): Outcome<OpResult> => {
            try {
              return { ok: true, value: applyOp(state, op) };
            } catch (error) {
              return { ok: false, error };
            }
          });
          await this.repo.writeBatch(tx, state);
          return outcomes;
        });
      } catch (err) {
        const deadlock = isAppError(err, 'store_unavailable') && err.details?.sqlstate === '40P01';
        if ((isAppError(err, 'already_exists') || deadlock) && attempt < 3) {
          this.log.debug({ attempt }, 'ledger batch raced on a unique key; re-running it');
          continue;
        }
        throw err;
      }
    }
  }
}

function collectIds(ops: LedgerOp[]) {
  const namespaceIds = new Set<string>();
  const nodeAddresses = new Set<string>();
  const jobIds = new Set<string>();
  const idemKeys = new Set<string>();
  for (const op of ops) {
    const ns = namespaceOf(op);
    if (ns) namespaceIds.add(ns);
    const node = nodeOf(op);
    if (node) nodeAddresses.add(node);
    const job = jobOf(op);
    if (job) jobIds.add(job);
    idemKeys.add(idemKeyOf(op));
  }
  return {
    namespaceIds: [...namespaceIds].sort(),
    nodeAddresses: [...nodeAddresses].sort(),
    jobIds: [...jobIds],
    idemKeys: [...idemKeys],
  };
}
