// Ledger operations that settle spot-check verification (pure): the network paying a node for a blind copy, a
// consumer's refund and the earning's reversal when a node is found wrong, and the forfeit of held-back earnings
// at a shadow-ban. Structural types only (the batch state of ledger.ts fits them), so that ledger.ts can apply
// these without an import cycle.
import { AppError } from '../../platform/errors.js';

export type QcLedgerOp =
  /** Network-paid earning of the node that ran a blind copy (`jobId`: the blind job's id). */
  | { kind: 'network_expense'; nodeAddress: string; jobId: string; amount: bigint }
  /** Gives a settled job's whole charge back to its namespace (the hold stays posted; at most once per job). */
  | { kind: 'refund'; namespaceId: string; jobId: string }
  /**
   * Takes back what the node earned for `jobId` (`of`: the entry that paid it), at most what is still unpaid:
   * held-back earnings are always unpaid, so a cheat found within the hold-back window loses all of it.
   */
  | { kind: 'earning_reversal'; nodeAddress: string; jobId: string; of: 'earning' | 'network_expense' }
  /** Forfeits the node's held-back (unpaid, younger than the hold-back window) earnings. */
  | { kind: 'forfeit'; nodeAddress: string; idemKey: string };

export type QcOpResult =
  | { kind: 'network_expense' | 'earning_reversal' | 'forfeit'; amount: bigint; replayed: boolean }
  | { kind: 'refund'; jobId: string; amount: bigint; replayed: boolean };

type QcEntryKind = QcLedgerOp['kind'];

export interface QcState {
  balances: Map<string, { available: bigint; dirty: boolean }>;
  holds: Map<string, { namespaceId: string; status: string; settledAmount: bigint | null }>;
  entries: Map<
    string,
    { kind: string; namespaceId: string | null; nodeAddress: string | null; amount: bigint }
  >;
}

export interface QcNode {
  earned: bigint;
  paidOut: bigint;
  heldBack: bigint;
  deltaEarned: bigint;
}

export interface QcIo {
  record(e: {
    kind: QcEntryKind;
    idemKey: string;
    amount: bigint;
    namespaceId?: string;
    nodeAddress?: string;
    jobId?: string;
  }): void;
  node(address: string): QcNode;
}

export function qcIdemKeyOf(op: QcLedgerOp): string {
  switch (op.kind) {
    case 'network_expense':
    case 'refund':
      return `${op.kind}:${op.jobId}`;
    case 'earning_reversal':
      return `earning_reversal:${op.jobId}:${op.nodeAddress}`;
    case 'forfeit':
      return `forfeit:${op.nodeAddress}:${op.idemKey}`;
  }
}

/** Entries an operation must see besides its own (the earning a reversal takes back). */
export function qcExtraKeysOf(op: QcLedgerOp): string[] {
  return op.kind === 'earning_reversal' ? [`${op.of}:${op.jobId}`] : [];
}

/** Whether the operation reads the node's totals (and so must lock its row): it may not take more than unpaid. */
export function qcLocksNode(op: QcLedgerOp): boolean {
  return op.kind === 'earning_reversal' || op.kind === 'forfeit';
}

const min = (a: bigint, b: bigint) => (a < b ? a : b);
const max0 = (a: bigint) => (a > 0n ? a : 0n);

export function applyQcOp(state: QcState, op: QcLedgerOp, io: QcIo): QcOpResult {
  const key = qcIdemKeyOf(op);
  const seen = state.entries.get(key);
  switch (op.kind) {
    case 'network_expense': {
      if (seen) {
        if (seen.kind !== op.kind || seen.nodeAddress !== op.nodeAddress || seen.amount !== op.amount)
          throw new AppError('idempotency_conflict', `${key} was already used for another node or amount`, {
            idemKey: key,
          });
        return { kind: op.kind, amount: seen.amount, replayed: true };
      }
      const n = io.node(op.nodeAddress);
      n.earned += op.amount;
      n.deltaEarned += op.amount;
      n.heldBack += op.amount;
      io.record({
        kind: op.kind,
        idemKey: key,
        amount: op.amount,
        nodeAddress: op.nodeAddress,
        jobId: op.jobId,
      });
      return { kind: op.kind, amount: op.amount, replayed: false };
    }
    case 'refund': {
      if (seen) return { kind: 'refund', jobId: op.jobId, amount: seen.amount, replayed: true };
      const h = state.holds.get(op.jobId);
      if (!h || h.namespaceId !== op.namespaceId || h.status !== 'posted' || h.settledAmount === null)
        throw new AppError('hold_not_pending', `job ${op.jobId} has no settled charge to refund`);
      const b = state.balances.get(op.namespaceId);
      if (!b) throw new AppError('namespace_not_found', `namespace ${op.namespaceId} has no credit balance`);
      b.available += h.settledAmount;
      b.dirty = true;
      io.record({
        kind: 'refund',
        idemKey: key,
        amount: h.settledAmount,
        namespaceId: op.namespaceId,
        jobId: op.jobId,
      });
      return { kind: 'refund', jobId: op.jobId, amount: h.settledAmount, replayed: false };
    }
    case 'earning_reversal': {
      if (seen) return { kind: op.kind, amount: seen.amount, replayed: true };
      const paid = state.entries.get(`${op.of}:${op.jobId}`);
      const n = io.node(op.nodeAddress);
      // Never below what was paid out already (paid_out <= earned holds): a matured, paid earning stays paid.
      const amount =
        paid && paid.nodeAddress === op.nodeAddress ? min(paid.amount, max0(n.earned - n.paidOut)) : 0n;
      n.earned -= amount;
      n.deltaEarned -= amount;
      n.heldBack = max0(n.heldBack - amount);
      // Recorded even at 0: the entry is the operation's idempotency key.
      io.record({ kind: op.kind, idemKey: key, amount, nodeAddress: op.nodeAddress, jobId: op.jobId });
      return { kind: op.kind, amount, replayed: false };
    }
    case 'forfeit': {
      if (seen) return { kind: op.kind, amount: seen.amount, replayed: true };
      const n = io.node(op.nodeAddress);
      const amount = min(max0(n.heldBack), max0(n.earned - n.paidOut));
      n.earned -= amount;
      n.deltaEarned -= amount;
      n.heldBack -= amount;
      io.record({ kind: op.kind, idemKey: key, amount, nodeAddress: op.nodeAddress });
      return { kind: op.kind, amount, replayed: false };
    }
  }
}
