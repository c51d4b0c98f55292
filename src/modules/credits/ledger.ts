// Ledger operations and their rules (pure): applies operations, in order, to locked balances and holds in memory.
import { AppError } from '../../platform/errors.js';
import { applyQcOp, qcIdemKeyOf, type QcLedgerOp, type QcOpResult } from './ledger-qc.js';

/** Integer micro-credits. */
export type Micro = bigint;

export type LedgerOp =
  | { kind: 'topup'; namespaceId: string; amount: Micro; idemKey: string }
  | { kind: 'bonus'; namespaceId: string; amount: Micro; idemKey: string; expiresAt?: Date | undefined }
  /** `bonusIdemKey` is the stored idempotency key of the bonus entry that expires. */
  | { kind: 'bonus_expire'; namespaceId: string; bonusIdemKey: string; grant: Micro }
  | { kind: 'reserve'; namespaceId: string; jobId: string; amount: Micro; expiresAt: Date }
  | { kind: 'settle'; namespaceId: string; jobId: string; actual: Micro }
  | { kind: 'void'; namespaceId: string; jobId: string }
  | { kind: 'hold_expire'; namespaceId: string; jobId: string }
  | { kind: 'storage_charge'; namespaceId: string; amount: Micro; idemKey: string }
  | { kind: 'earning'; nodeAddress: string; jobId: string; amount: Micro }
  | { kind: 'payout'; nodeAddress: string; amount: Micro; idemKey: string }
  | QcLedgerOp;

export type EntryKind =
  | 'topup'
  | 'bonus'
  | 'bonus_expire'
  | 'reserve'
  | 'settle'
  | 'release'
  | 'void'
  | 'hold_expire'
  | 'storage_charge'
  | 'earning'
  | 'payout'
  | QcLedgerOp['kind'];

export interface NewEntry {
  kind: EntryKind;
  namespaceId: string | null;
  nodeAddress: string | null;
  jobId: string | null;
  amount: Micro;
  idemKey: string;
  expiresAt: Date | null;
}

export interface ExistingEntry {
  kind: EntryKind;
  namespaceId: string | null;
  nodeAddress: string | null;
  amount: Micro;
}

export interface Balance {
  available: Micro;
  reserved: Micro;
  bonusAvailable: Micro;
  dirty: boolean;
}

export type HoldStatus = 'pending' | 'posted' | 'voided' | 'expired';

export interface Hold {
  jobId: string;
  namespaceId: string;
  amount: Micro;
  settledAmount: Micro | null;
  status: HoldStatus;
  expiresAt: Date;
  isNew: boolean;
  dirty: boolean;
}

export interface NodeBalance {
  earned: Micro;
  paidOut: Micro;
  /**
   * Earnings still inside the hold-back window (loaded for payouts; earnings of this batch are added): no
   * payout may include them, so that a node proven to cheat can forfeit them.
   */
  heldBack: Micro;
  deltaEarned: Micro;
  deltaPaidOut: Micro;
}

export type OpResult =
  | {
      kind: 'topup' | 'bonus' | 'storage_charge' | 'payout' | 'bonus_expire';
      amount: Micro;
      replayed: boolean;
    }
  /** `status` tells a replayed reservation whose hold has since closed from one that still holds credit. */
  | { kind: 'reserve'; jobId: string; amount: Micro; expiresAt: Date; status: HoldStatus; replayed: boolean }
  | { kind: 'settle'; jobId: string; charged: Micro; released: Micro; replayed: boolean }
  | { kind: 'void' | 'hold_expire'; jobId: string; released: Micro; replayed: boolean }
  | { kind: 'earning'; jobId: string; amount: Micro; replayed: boolean }
  | QcOpResult;

/** Everything one batch transaction has loaded (and locked) and the writes it accumulates. */
export interface BatchState {
  now: Date;
  balances: Map<string, Balance>;
  nodes: Map<string, NodeBalance>;
  holds: Map<string, Hold>;
  entries: Map<string, ExistingEntry>;
  newEntries: NewEntry[];
}

/** The idempotency key under which an operation's main entry is stored. */
export function idemKeyOf(op: LedgerOp): string {
  switch (op.kind) {
    // Caller-chosen keys are scoped to their owner: one tenant's keys never collide with another's.
    case 'topup':
    case 'bonus':
    case 'storage_charge':
      return `${op.kind}:${op.namespaceId}:${op.idemKey}`;
    case 'payout':
      return `payout:${op.nodeAddress}:${op.idemKey}`;
    case 'bonus_expire':
      return `bonus_expire:${op.bonusIdemKey}`;
    case 'reserve':
    case 'settle':
    case 'void':
    case 'hold_expire':
    case 'earning':
      return `${op.kind}:${op.jobId}`;
    default:
      return qcIdemKeyOf(op);
  }
}

export function namespaceOf(op: LedgerOp): string | undefined {
  return 'namespaceId' in op ? op.namespaceId : undefined;
}

export function nodeOf(op: LedgerOp): string | undefined {
  return 'nodeAddress' in op ? op.nodeAddress : undefined;
}

export function jobOf(op: LedgerOp): string | undefined {
  return 'jobId' in op ? op.jobId : undefined;
}

const min = (a: bigint, b: bigint) => (a < b ? a : b);

export const MAX_MICRO = 9_223_372_036_854_775_807n; // PostgreSQL bigint

/** Refuses a total that PostgreSQL's bigint cannot hold (it would otherwise fail the whole batch). */
function checkedAdd(a: bigint, b: bigint, what: string): bigint {
  const r = a + b;
  if (r > MAX_MICRO) throw new AppError('invalid_amount', `${what} would exceed the largest storable amount`);
  return r;
}

function conflict(op: LedgerOp, what: string): AppError {
  return new AppError('idempotency_conflict', `${idemKeyOf(op)} was already used ${what}`, {
    idemKey: idemKeyOf(op),
  });
}

function balanceOf(state: BatchState, namespaceId: string): Balance {
  const b = state.balances.get(namespaceId);
  if (!b) throw new AppError('namespace_not_found', `namespace ${namespaceId} has no credit balance`);
  return b;
}

function entry(kind: EntryKind, idemKey: string, amount: Micro, p: Partial<NewEntry>): NewEntry {
  return {
    kind,
    idemKey,
    amount,
    namespaceId: p.namespaceId ?? null,
    nodeAddress: p.nodeAddress ?? null,
    jobId: p.jobId ?? null,
    expiresAt: p.expiresAt ?? null,
  };
}

/** A repeated simple operation: same kind, owner and amount replays; anything else is a conflict. */
function replayOrConflict(
  op: LedgerOp,
  key: string,
  state: BatchState,
  amount: Micro,
): { amount: Micro } | undefined {
  const seen = state.entries.get(key);
  if (!seen) return undefined;
  const owner = namespaceOf(op) ?? null;
  const node = nodeOf(op) ?? null;
  if (
    seen.kind !== op.kind ||
    seen.namespaceId !== owner ||
    seen.nodeAddress !== node ||
    seen.amount !== amount
  ) {
    throw conflict(op, `with a different kind, owner or amount (${seen.kind} ${seen.amount})`);
  }
  return { amount: seen.amount };
}

function recordEntry(state: BatchState, e: NewEntry): void {
  state.newEntries.push(e);
  state.entries.set(e.idemKey, {
    kind: e.kind,
    namespaceId: e.namespaceId,
    nodeAddress: e.nodeAddress,
    amount: e.amount,
  });
}

/**
 * Applies one operation to the batch state. Throws an AppError (and changes nothing) when the operation
 * is refused; other operations of the batch are unaffected.
 */
export function applyOp(state: BatchState, op: LedgerOp): OpResult {
  const key = idemKeyOf(op);
  switch (op.kind) {
    case 'topup':
    case 'bonus': {
      const b = balanceOf(state, op.namespaceId);
      const replay = replayOrConflict(op, key, state, op.amount);
      if (replay) return { kind: op.kind, amount: replay.amount, replayed: true };
      const available = checkedAdd(b.available, op.amount, 'available');
      const bonus = op.kind === 'bonus' ? checkedAdd(b.bonusAvailable, op.amount, 'bonus') : b.bonusAvailable;
      b.available = available;
      b.bonusAvailable = bonus;
      b.dirty = true;
      recordEntry(
        state,
        entry(op.kind, key, op.amount, {
          namespaceId: op.namespaceId,
          expiresAt: op.kind === 'bonus' ? (op.expiresAt ?? null) : null,
        }),
      );
      return { kind: op.kind, amount: op.amount, replayed: false };
    }
    case 'bonus_expire': {
      const b = balanceOf(state, op.namespaceId);
      const seen = state.entries.get(key);
      if (seen) return { kind: 'bonus_expire', amount: seen.amount, replayed: true };
      // Charges consume bonus credit first; what is left of this grant expires. While part of that is held by a
      // pending reservation the expiry waits (the sweeper retries), so a held bonus cannot outlive its expiry.
      const expired = min(op.grant, b.bonusAvailable);
      if (expired > b.available) {
        throw new AppError(
          'bonus_held',
          `bonus ${op.bonusIdemKey} is partly held by pending reservations; expiry retried later`,
        );
      }
      b.available -= expired;
      b.bonusAvailable -= expired;
      b.dirty = true;
      recordEntry(state, entry('bonus_expire', key, expired, { namespaceId: op.namespaceId }));
      return { kind: 'bonus_expire', amount: expired, replayed: false };
    }
    case 'storage_charge': {
      const b = balanceOf(state, op.namespaceId);
      const replay = replayOrConflict(op, key, state, op.amount);
      if (replay) return { kind: op.kind, amount: replay.amount, replayed: true };
      if (b.available < op.amount) {
        throw new AppError(
          'insufficient_credits',
          `namespace ${op.namespaceId} lacks ${op.amount - b.available} micro-credits`,
        );
      }
      b.available -= op.amount;
      b.bonusAvailable -= min(b.bonusAvailable, op.amount);
      b.dirty = true;
      recordEntry(state, entry('storage_charge', key, op.amount, { namespaceId: op.namespaceId }));
      return { kind: op.kind, amount: op.amount, replayed: false };
    }
    case 'reserve': {
      const b = balanceOf(state, op.namespaceId);
      const existing = state.holds.get(op.jobId);
      if (existing) {
        // No amounts in the message: the other hold may belong to another tenant.
        if (existing.namespaceId !== op.namespaceId || existing.amount !== op.amount)
          throw conflict(op, 'for a different hold');
        return {
          kind: 'reserve',
          jobId: op.jobId,
          amount: existing.amount,
          expiresAt: existing.expiresAt,
          status: existing.status,
          replayed: true,
        };
      }
      if (b.available < op.amount) {
        throw new AppError(
          'insufficient_credits',
          `namespace ${op.namespaceId} has ${b.available} micro-credits available, job needs up to ${op.amount}`,
          {
            available: b.available.toString(),
            required: op.amount.toString(),
          },
        );
      }
      b.available -= op.amount;
      b.reserved = checkedAdd(b.reserved, op.amount, 'reserved');
      b.dirty = true;
      state.holds.set(op.jobId, {
        jobId: op.jobId,
        namespaceId: op.namespaceId,
        amount: op.amount,
        settledAmount: null,
        status: 'pending',
        expiresAt: op.expiresAt,
        isNew: true,
        dirty: true,
      });
      recordEntry(state, entry('reserve', key, op.amount, { namespaceId: op.namespaceId, jobId: op.jobId }));
      return {
        kind: 'reserve',
        jobId: op.jobId,
        amount: op.amount,
        expiresAt: op.expiresAt,
        status: 'pending',
        replayed: false,
      };
    }
    case 'settle': {
      const b = balanceOf(state, op.namespaceId);
      const h = state.holds.get(op.jobId);
      if (!h || h.namespaceId !== op.namespaceId)
        throw new AppError('hold_not_found', `no hold for job ${op.jobId} in namespace ${op.namespaceId}`);
      if (h.status === 'posted') {
        if (h.settledAmount !== op.actual)
          throw conflict(op, `to settle ${h.settledAmount}, not ${op.actual}`);
        return {
          kind: 'settle',
          jobId: op.jobId,
          charged: h.settledAmount,
          released: h.amount - h.settledAmount,
          replayed: true,
        };
      }
      if (h.status !== 'pending')
        throw new AppError('hold_not_pending', `the hold of job ${op.jobId} is already ${h.status}`);
      if (op.actual > h.amount)
        throw new AppError(
          'settle_exceeds_hold',
          `job ${op.jobId}: actual cost ${op.actual} exceeds its hold of ${h.amount}`,
        );
      const released = h.amount - op.actual;
      b.reserved -= h.amount;
      b.available += released;
      b.bonusAvailable -= min(b.bonusAvailable, op.actual);
      b.dirty = true;
      Object.assign(h, { status: 'posted', settledAmount: op.actual, dirty: true });
      recordEntry(state, entry('settle', key, op.actual, { namespaceId: op.namespaceId, jobId: op.jobId }));
      if (released > 0n)
        recordEntry(
          state,
          entry('release', `release:${op.jobId}`, released, { namespaceId: op.namespaceId, jobId: op.jobId }),
        );
      return { kind: 'settle', jobId: op.jobId, charged: op.actual, released, replayed: false };
    }
    case 'void':
    case 'hold_expire': {
      const b = balanceOf(state, op.namespaceId);
      const h = state.holds.get(op.jobId);
      if (!h || h.namespaceId !== op.namespaceId)
        throw new AppError('hold_not_found', `no hold for job ${op.jobId} in namespace ${op.namespaceId}`);
      const target: HoldStatus = op.kind === 'void' ? 'voided' : 'expired';
      if (h.status === target) return { kind: op.kind, jobId: op.jobId, released: h.amount, replayed: true };
      if (h.status !== 'pending')
        throw new AppError('hold_not_pending', `the hold of job ${op.jobId} is already ${h.status}`);
      if (op.kind === 'hold_expire' && h.expiresAt > state.now) {
        throw new AppError('hold_not_pending', `the hold of job ${op.jobId} has not expired yet`);
      }
      b.reserved -= h.amount;
      b.available += h.amount;
      b.dirty = true;
      Object.assign(h, { status: target, dirty: true });
      recordEntry(state, entry(op.kind, key, h.amount, { namespaceId: op.namespaceId, jobId: op.jobId }));
      return { kind: op.kind, jobId: op.jobId, released: h.amount, replayed: false };
    }
    case 'earning': {
      const replay = replayOrConflict(op, key, state, op.amount);
      if (replay) return { kind: 'earning', jobId: op.jobId, amount: replay.amount, replayed: true };
      const h = state.holds.get(op.jobId);
      if (!h || h.status !== 'posted' || h.settledAmount === null) {
        throw new AppError('hold_not_pending', `job ${op.jobId} has no settled charge to earn from`);
      }
      if (op.amount > h.settledAmount) {
        throw new AppError(
          'settle_exceeds_hold',
          `earning ${op.amount} exceeds job ${op.jobId}'s settled charge of ${h.settledAmount}`,
        );
      }
      const n = nodeBalanceOf(state, op.nodeAddress);
      n.earned = checkedAdd(n.earned, op.amount, 'earned');
      n.deltaEarned += op.amount;
      n.heldBack += op.amount;
      recordEntry(state, entry('earning', key, op.amount, { nodeAddress: op.nodeAddress, jobId: op.jobId }));
      return { kind: 'earning', jobId: op.jobId, amount: op.amount, replayed: false };
    }
    case 'payout': {
      const replay = replayOrConflict(op, key, state, op.amount);
      if (replay) return { kind: 'payout', amount: replay.amount, replayed: true };
      const n = nodeBalanceOf(state, op.nodeAddress);
      // Payouts only ever draw on matured earnings: paid out + this ≤ earned − held back.
      const payable = n.earned - n.paidOut - n.heldBack;
      if (payable < op.amount) {
        throw new AppError(
          'insufficient_credits',
          `node ${op.nodeAddress} has ${payable} payable (${n.earned - n.paidOut} unpaid, of which ${n.heldBack} ` +
            `held back as younger than the hold-back window), payout asks ${op.amount}`,
        );
      }
      n.paidOut += op.amount;
      n.deltaPaidOut += op.amount;
      recordEntry(state, entry('payout', key, op.amount, { nodeAddress: op.nodeAddress }));
      return { kind: 'payout', amount: op.amount, replayed: false };
    }
    default:
      return applyQcOp(state, op, {
        record: (e) => recordEntry(state, entry(e.kind, e.idemKey, e.amount, e)),
        node: (address) => nodeBalanceOf(state, address),
      });
  }
}

function nodeBalanceOf(state: BatchState, address: string): NodeBalance {
  let n = state.nodes.get(address);
  if (!n) {
    n = { earned: 0n, paidOut: 0n, heldBack: 0n, deltaEarned: 0n, deltaPaidOut: 0n };
    state.nodes.set(address, n);
  }
  return n;
}

/** Accepts bigint or a safe integer number; anything else (floats, negatives, strings) is refused. */
export function toMicro(value: unknown, name: string, opts: { allowZero?: boolean } = {}): Micro {
  let v: bigint;
  if (typeof value === 'bigint') v = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) v = BigInt(value);
  else if (typeof value === 'string' && /^\d+$/.test(value)) v = BigInt(value);
  else
    throw new AppError(
      'invalid_amount',
      `${name} must be an integer number of micro-credits, got ${String(value)}`,
    );
  if (v < 0n || (v === 0n && !opts.allowZero))
    throw new AppError('invalid_amount', `${name} must be ${opts.allowZero ? '>= 0' : '> 0'}, got ${v}`);
  if (v > 9_223_372_036_854_775_807n)
    throw new AppError('invalid_amount', `${name} exceeds the bigint range`);
  return v;
}
