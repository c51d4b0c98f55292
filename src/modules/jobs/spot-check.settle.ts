// Settles one spot check's verdict in one PostgreSQL transaction: the verdict row (its idempotency key), the
// network's payment for the blind copies (network_expense), and for a node found wrong the consumer's refund and
// the earning's reversal, and at QC_SHADOW_BAN_FAILURES the shadow-ban flag and the forfeit of held-back
// earnings, each with its audit entry. After the commit (and only when this call decided it): the flag's Redis
// mirror, the QC result documents (MongoDB, through the record stream) and the reputation restore of the node a
// tie-break found right. A replayed or duplicated verdict finds its row and changes nothing.
import type { AuditService } from '../audit/index.js';
import { isBatchRace, type LedgerOp, type LedgerService } from '../credits/index.js';
import type { MatchmakingService, NodeAdminService } from '../nodes/index.js';
import type { RecordEventInput } from '../records/index.js';
import { withTransaction, type Pool } from '../../stores/postgres/pool.js';
import type { Logger } from '../../platform/logger.js';
import type { JobRecordSink } from './job-records.js';
import { QcChecksRepository, type QcCheckRow } from './qc-checks.repository.js';

export const QC_ACTOR = 'system:qc';

/** What a check decided, with what the network owes the nodes that ran its blind copies. */
export interface QcVerdictInput extends QcCheckRow {
  /** The consumer's settled charge of the original job (0: nothing to refund). */
  charged: bigint;
  /** What the network pays each blind copy's node (its share of what the copy would have cost). */
  payB: bigint;
  payC: bigint;
}

export interface QcSettled {
  /** False: the check was decided before; nothing was changed now. */
  fresh: boolean;
  refunded: bigint;
  reversed: bigint;
  forfeited: bigint;
  shadowBanned: boolean;
}

export class QcSettler {
  private readonly repo = new QcChecksRepository();

  constructor(
    private readonly deps: {
      pool: Pool;
      ledger: LedgerService;
      admin: NodeAdminService;
      audit: AuditService;
      matchmaking: MatchmakingService;
      records?: JobRecordSink;
      log: Logger;
      shadowBanFailures: number;
    },
  ) {}

  async settle(v: QcVerdictInput): Promise<QcSettled> {
    // A race with a ledger batch over the same rows (deadlock, unique key) re-runs the verdict from fresh state.
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.settleOnce(v);
      } catch (err) {
        if (!isBatchRace(err) || attempt >= 3) throw err;
      }
    }
  }

  private async settleOnce(v: QcVerdictInput): Promise<QcSettled> {
    const ops = this.deps.ledger.ops;
    const settled = await withTransaction(this.deps.pool, async (tx) => {
      const none: QcSettled = {
        fresh: false,
        refunded: 0n,
        reversed: 0n,
        forfeited: 0n,
        shadowBanned: false,
      };
      if (!(await this.repo.insertVerdict(tx, v))) return none;
      const wrong = v.wrongNode;
      const ledgerOps: LedgerOp[] = [];
      // A blind copy's node is paid unless it was found wrong (then it earned nothing to reverse).
      if (v.payB > 0n && wrong !== v.nodeB) ledgerOps.push(ops.networkExpense(v.nodeB, v.blindJobId, v.payB));
      if (v.nodeC && v.tieJobId && v.payC > 0n)
        ledgerOps.push(ops.networkExpense(v.nodeC, v.tieJobId, v.payC));
      if (wrong === v.nodeA) {
        if (v.charged > 0n) ledgerOps.push(ops.refund(v.namespaceId, v.jobId));
        ledgerOps.push(ops.earningReversal(v.nodeA, v.jobId, 'earning'));
      }
      let banned = false;
      if (wrong) {
        await this.repo.lockNode(tx, wrong);
        const failures = await this.repo.countWrong(tx, wrong);
        if (failures >= this.deps.shadowBanFailures) {
          banned = true;
          await this.deps.admin.persistFlag(tx, {
            nodeAddress: wrong,
            flag: 'shadow_ban',
            setBy: QC_ACTOR,
            reason: `found wrong by ${failures} spot checks`,
          });
          ledgerOps.push(ops.forfeit(wrong, `qc:${v.jobId}`));
        }
      }
      const outcomes = await this.deps.ledger.applyInTransaction(tx, ledgerOps);
      const out = { ...none, fresh: true, shadowBanned: banned };
      for (const o of outcomes) {
        // Any refused operation rolls the whole verdict back: the check stays undecided and can be settled again.
        if (!o.ok) throw o.error;
        const r = o.value;
        if (r.kind === 'refund') out.refunded = r.amount;
        if (r.kind === 'earning_reversal') out.reversed = r.amount;
        if (r.kind === 'forfeit') out.forfeited = r.amount;
      }
      if (v.verdict !== 'agreed')
        await this.deps.audit.append(
          {
            actor: QC_ACTOR,
            action: 'qc.check_failed',
            target: v.jobId,
            body: {
              verdict: v.verdict,
              rule: v.rule,
              similarity: v.similarity,
              nodes: { a: v.nodeA, b: v.nodeB, c: v.nodeC },
              wrongNode: wrong,
              refundedMicro: out.refunded.toString(),
              reversedMicro: out.reversed.toString(),
            },
          },
          tx,
        );
      if (banned && wrong)
        await this.deps.audit.append(
          {
            actor: QC_ACTOR,
            action: 'node.shadow_ban',
            target: wrong,
            body: { byCheck: v.jobId, forfeitedMicro: out.forfeited.toString() },
          },
          tx,
        );
      return out;
    });
    if (!settled.fresh) return settled;
    if (settled.shadowBanned && v.wrongNode)
      await this.deps.admin
        .mirrorFlag(v.wrongNode, 'shadow_ban')
        .catch((err: unknown) =>
          this.deps.log.warn(
            { err, nodeId: v.wrongNode },
            'shadow-ban not mirrored yet (the reconcile task will)',
          ),
        );
    // The node a tie-break found right gets its disagreement penalty back.
    if (v.verdict === 'original_wrong' || v.verdict === 'blind_wrong') {
      const right = v.verdict === 'original_wrong' ? v.nodeB : v.nodeA;
      this.deps.matchmaking.observe(v.environment, right, { kind: 'qc', agreed: true, restore: true });
    }
    await this.deps.records
      ?.publish(qcEvents(v))
      .catch((err: unknown) => this.deps.log.warn({ err, jobId: v.jobId }, 'QC result not recorded'));
    return settled;
  }
}

/** One QC result document per node that ran the request (ids derived from the role: a replay is a no-op). */
function qcEvents(v: QcVerdictInput): RecordEventInput[] {
  const at = new Date().toISOString();
  const nodes: Array<[string, string | null]> = [
    ['a', v.nodeA],
    ['b', v.nodeB],
    ['c', v.nodeC],
  ];
  return nodes.flatMap(([role, node]) =>
    node
      ? [
          {
            version: 1 as const,
            type: 'qc.result' as const,
            namespaceId: v.namespaceId,
            jobId: v.jobId,
            at,
            model: v.model,
            eventId: `qc-${role}`,
            nodeAddress: node,
            verdict:
              v.verdict === 'agreed'
                ? ('pass' as const)
                : v.verdict === 'inconclusive'
                  ? ('inconclusive' as const)
                  : node === v.wrongNode
                    ? ('fail' as const)
                    : ('pass' as const),
            score: Math.max(0, Math.min(1, v.similarity)),
            details: { role, rule: v.rule, verdict: v.verdict, wrongNode: v.wrongNode },
          },
        ]
      : [],
  );
}
