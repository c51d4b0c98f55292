// Spot-check verification (issue 16 item 3), off the consumer's path: after a job succeeded and its client was
// answered, a sampled share of jobs is run again, blind, on a node of another operator account (same request,
// same pinned seed, a job id of its own: a node cannot tell it from consumer traffic). The two results are
// compared by the stated rule (qc-compare.ts). A disagreement penalizes both nodes at once and is decided by a
// tie-break on a third node (of a third operator): the node the tie-break disagrees with is found wrong. The
// verdict is settled by QcSettler, once.
//
// Sampling: QC_SAMPLE_BASIS_POINTS of succeeded jobs (QC_PROBATION_SAMPLE_BASIS_POINTS while the node that ran
// it is on probation), drawn at random per job — never from the job id, which the node sees.
import { randomInt } from 'node:crypto';
import type { Logger } from '../../platform/logger.js';
import { observationOf, type Lease, type MatchmakingService, type NodeAdminService } from '../nodes/index.js';
import type { JobMessage } from '../routing/index.js';
import type { NodeExecutor, NodeResult } from './job.js';
import { costMicro, type JobPrice } from './job-price.js';
import { causeOf, isNodeCause } from './jobs.attempt.js';
import { blindJobId, compareResults, withPinnedSeed, type Comparison } from './qc-compare.js';
import type { QcCheckRow, QcVerdict } from './qc-checks.repository.js';
import type { QcSettled, QcSettler } from './spot-check.settle.js';
import { boundUsage } from './usage-bound.js';

export interface SpotCheckOptions {
  sampleBasisPoints: number;
  probationSampleBasisPoints: number;
  nodeSharePercent: bigint;
  jobTimeoutMs: number;
}

/** A job that succeeded, as its node ran it. */
export interface CheckedJob {
  /** The consumer's job message (its request is compared with the pinned seed it was delivered with). */
  message: JobMessage;
  lease: Lease;
  result: NodeResult;
  /** What the consumer was charged (refunded if its node is found wrong). */
  charged: bigint;
  price: JobPrice;
}

export interface CheckOutcome {
  verdict: QcVerdict;
  wrongNode: string | null;
  settled: QcSettled;
}

type BlindRun = { node: string; result: NodeResult; pay: bigint };

export class SpotChecks {
  private readonly log: Logger;
  private readonly running = new Set<Promise<unknown>>();
  /** Checks started and settled so far (benchmarks and tests read them). */
  /** compareMs: CPU time of the comparisons (synchronous, in this process; the blind runs are the nodes' work). */
  readonly stats = { sampled: 0, settled: 0, skipped: 0, compareMs: 0 };

  constructor(
    private readonly deps: {
      matchmaking: MatchmakingService;
      admin: Pick<NodeAdminService, 'operatorNodes'>;
      executor: NodeExecutor;
      settler: QcSettler;
      log: Logger;
      options: SpotCheckOptions;
      /** A uniform draw in [0, 1) (tests and benchmarks pin it); default crypto-random. */
      random?: () => number;
    },
  ) {
    this.log = deps.log.child({ component: 'spot-checks' });
  }

  /** Samples the job and, if drawn, checks it in the background; never throws, never delays the caller. */
  consider(job: CheckedJob): void {
    if (job.result.cancelled || job.result.violation) return;
    const o = this.deps.options;
    const draw = (this.deps.random ?? (() => randomInt(0, 1_000_000) / 1_000_000))() * 10_000;
    const most = Math.max(o.sampleBasisPoints, o.probationSampleBasisPoints);
    if (draw >= most) return;
    const p = (async () => {
      if (draw >= o.sampleBasisPoints && !(await this.deps.matchmaking.onProbation(job.lease.nodeAddress)))
        return;
      this.stats.sampled += 1;
      await this.check(job);
    })().catch((err: unknown) => this.log.warn({ err, jobId: job.message.jobId }, 'spot check not settled'));
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  /** Waits for the checks running here (graceful shutdown), at most `deadlineMs`. */
  async drain(deadlineMs: number): Promise<number> {
    const until = Date.now() + deadlineMs;
    while (this.running.size > 0 && Date.now() < until)
      await Promise.race([
        Promise.allSettled([...this.running]),
        new Promise((r) => setTimeout(r, Math.max(1, until - Date.now()))),
      ]);
    return this.running.size;
  }

  /** Runs one check to its verdict and settles it; undefined when no independent node could run a copy. */
  async check(job: CheckedJob): Promise<CheckOutcome | undefined> {
    const m = job.message;
    const a = job.lease.nodeAddress;
    const b = await this.runBlind(job, 'b', await this.deps.admin.operatorNodes([a]));
    if (!b) return this.skip(m.jobId, 'no node of another operator could run the blind copy');
    const ab = this.compare(m.request, job.result, b.result);
    const base = {
      jobId: m.jobId,
      namespaceId: m.namespaceId,
      model: m.model,
      environment: m.environment,
      nodeA: a,
      nodeB: b.node,
      blindJobId: blindJobId(m.jobId, 'b'),
    };
    if (ab.agreed) return this.settle(job, { ...base, ...verdictOf(ab, 'agreed'), payB: b.pay });
    // Both are penalized until a third node decides (the settle gives the right one its penalty back).
    for (const n of [a, b.node])
      this.deps.matchmaking.observe(m.environment, n, { kind: 'qc', agreed: false });
    const c = await this.runBlind(job, 'c', await this.deps.admin.operatorNodes([a, b.node]));
    const tie = { nodeC: c?.node ?? null, tieJobId: c ? blindJobId(m.jobId, 'c') : null, payC: c?.pay ?? 0n };
    if (!c) return this.settle(job, { ...base, ...tie, ...verdictOf(ab, 'inconclusive'), payB: b.pay });
    const ac = this.compare(m.request, job.result, c.result).agreed;
    const bc = this.compare(m.request, b.result, c.result).agreed;
    const verdict: QcVerdict = ac && !bc ? 'blind_wrong' : bc && !ac ? 'original_wrong' : 'inconclusive';
    return this.settle(job, { ...base, ...tie, ...verdictOf(ab, verdict), payB: b.pay });
  }

  private compare(request: JobMessage['request'], x: NodeResult, y: NodeResult): Comparison {
    const t0 = performance.now();
    const c = compareResults(request, x, y);
    this.stats.compareMs += performance.now() - t0;
    return c;
  }

  private skip(jobId: string, why: string): undefined {
    this.stats.skipped += 1;
    this.log.debug({ jobId }, `spot check skipped: ${why}`);
    return undefined;
  }

  private async settle(
    job: CheckedJob,
    v: Omit<QcCheckRow, 'nodeC' | 'tieJobId' | 'wrongNode'> &
      Partial<Pick<QcCheckRow, 'nodeC' | 'tieJobId'>> & { payB: bigint; payC?: bigint },
  ): Promise<CheckOutcome> {
    const wrongNode = v.verdict === 'original_wrong' ? v.nodeA : v.verdict === 'blind_wrong' ? v.nodeB : null;
    const settled = await this.deps.settler.settle({
      ...v,
      nodeC: v.nodeC ?? null,
      tieJobId: v.tieJobId ?? null,
      wrongNode,
      charged: job.charged,
      payC: v.payC ?? 0n,
    });
    this.stats.settled += 1;
    if (v.verdict !== 'agreed')
      this.log.info({ jobId: v.jobId, verdict: v.verdict, wrongNode, ...settled }, 'spot check failed');
    return { verdict: v.verdict, wrongNode, settled };
  }

  /**
   * Runs the job blind on a node outside `exclude` (the operators already involved): the consumer's request with
   * the job's pinned seed, under a job id of its own. Undefined when no node is free or the copy failed.
   */
  private async runBlind(job: CheckedJob, role: 'b' | 'c', exclude: string[]): Promise<BlindRun | undefined> {
    const m = job.message;
    const id = blindJobId(m.jobId, role);
    const lease = await this.deps.matchmaking.leaseForCheck({
      jobId: id,
      environment: m.environment,
      model: m.model,
      excludeNodes: exclude,
      preferBanned: false,
    });
    if (!lease) return undefined;
    const blind: JobMessage = {
      ...withPinnedSeed(m),
      jobId: id,
      attempt: 0,
      excludedNodeIds: [],
      failures: [],
    };
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.deps.options.jobTimeoutMs);
    const started = performance.now();
    try {
      const bounded = boundUsage(m.request, await this.deps.executor.run(lease, blind, ac.signal));
      if (!bounded.ok) throw new Error(bounded.reason);
      const result = bounded.result;
      await this.deps.matchmaking.complete(
        lease,
        'ok',
        observationOf({
          result,
          latencyMs: performance.now() - started,
          ...(m.request ? { request: m.request } : {}),
        }),
      );
      const cost = costMicro(job.price, result.tokensIn, result.tokensOut);
      const hold = m.holdMicro ? BigInt(m.holdMicro) : cost;
      return {
        node: lease.nodeAddress,
        result,
        pay: ((cost < hold ? cost : hold) * this.deps.options.nodeSharePercent) / 100n,
      };
    } catch (err) {
      const cause = causeOf(err);
      const code = cause === 'duplicate_delivery' ? 'no_capacity' : cause;
      await this.deps.matchmaking
        .complete(lease, isNodeCause(code) ? 'failed' : 'ok', observationOf({ cause: code }))
        .catch(() => undefined);
      this.log.info({ err, jobId: id, nodeId: lease.nodeAddress }, 'blind copy failed');
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }
}

function verdictOf(c: Comparison, verdict: QcVerdict): Pick<QcCheckRow, 'rule' | 'verdict' | 'similarity'> {
  return { rule: c.rule, verdict, similarity: c.similarity };
}
