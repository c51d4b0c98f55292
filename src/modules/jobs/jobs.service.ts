// The job flow across the stores: submit (reserve, job row, confirmed enqueue) and dispatch (select-and-lease,
// run on the node, verify the lease, settle once, credit the node, release) with retry, refund and expiry.
import { randomUUID } from 'node:crypto';
import { AppError, isAppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { LedgerService } from '../credits/index.js';
import type { MatchmakingService } from '../nodes/index.js';
import type { JobMessage, JobOutcome, PriorityClass, RoutingService } from '../routing/index.js';
import { JobsRepository } from './jobs.repository.js';

/** What a node reports for a job it ran. */
export interface NodeResult {
  tokensIn: number;
  tokensOut: number;
  output: string;
}

/** Delivers a job to a node and returns its verified result (the WebSocket gateway implements this). */
export interface NodeExecutor {
  run(nodeAddress: string, job: JobMessage, signal: AbortSignal): Promise<NodeResult>;
}

export interface JobsOptions {
  /** Micro-credits per token (input and output alike; a price table per model is the next step). */
  pricePerTokenMicro: bigint;
  /** Share of the settled charge credited to the node operator, in percent. */
  nodeSharePercent: bigint;
  maxAttempts: number;
  jobTimeoutMs: number;
}

export interface SubmitRequest {
  namespaceId: string;
  apiKeyId?: string;
  model: string;
  environment: 'testnet' | 'mainnet';
  priority: PriorityClass;
  maxTokens: number;
  ttlMs: number;
  jobId?: string;
}

export class JobsService {
  private readonly repo = new JobsRepository();
  private readonly log: Logger;

  constructor(
    private readonly deps: {
      pool: Pool;
      ledger: LedgerService;
      routing: RoutingService;
      matchmaking: MatchmakingService;
      executor: NodeExecutor;
      log: Logger;
      options: JobsOptions;
    },
  ) {
    this.log = deps.log.child({ component: 'jobs' });
  }

  /** Reserves the maximum cost, records the job and enqueues it; accepted once the broker confirms. */
  async submit(req: SubmitRequest): Promise<{ jobId: string; maxCost: bigint }> {
    if (!Number.isSafeInteger(req.maxTokens) || req.maxTokens <= 0)
      throw new AppError('invalid_request', 'maxTokens must be a positive integer');
    const jobId = req.jobId ?? randomUUID();
    const maxCost = BigInt(req.maxTokens) * this.deps.options.pricePerTokenMicro;
    const createdAt = new Date();
    // The hold outlives every retry and the TTL, so a late result can still settle; the sweeper refunds after.
    await this.deps.ledger.reserve(
      req.namespaceId,
      jobId,
      maxCost,
      req.ttlMs + this.deps.options.jobTimeoutMs * this.deps.options.maxAttempts,
    );
    await this.repo.insertJob(this.deps.pool, {
      id: jobId,
      namespaceId: req.namespaceId,
      apiKeyId: req.apiKeyId ?? null,
      model: req.model,
      mode: 'polling',
      priority: req.priority,
      environment: req.environment,
      maxCost,
      createdAt,
    });
    const message: JobMessage = {
      v: 1,
      jobId,
      namespaceId: req.namespaceId,
      model: req.model,
      environment: req.environment,
      priority: req.priority,
      subcloud: null,
      attempt: 0,
      excludedNodeIds: [],
      failures: [],
      enqueuedAt: createdAt.toISOString(),
      ttlMs: req.ttlMs,
    };
    try {
      await this.deps.routing.submit(message);
    } catch (err) {
      // Never enqueued: refund now rather than at hold expiry.
      await this.finishFailed(message, 'cancelled');
      throw err;
    }
    return { jobId, maxCost };
  }

  /** The consumer's handler: returns only after the job's outcome is committed in PostgreSQL. */
  readonly handle = async (job: JobMessage): Promise<JobOutcome> => {
    const status = await this.repo.findStatus(this.deps.pool, job.namespaceId, job.jobId);
    if (status !== 'queued' && status !== 'dispatched') return { kind: 'done' }; // redelivered after its outcome
    const lastAttempt = job.attempt + 1 >= this.deps.options.maxAttempts;
    const lease = await this.deps.matchmaking.selectAndLease({
      jobId: job.jobId,
      environment: job.environment,
      model: job.model,
      excludeNodes: job.excludedNodeIds,
    });
    if (!lease) {
      if (lastAttempt) await this.finishFailed(job, 'failed');
      return { kind: 'failed', reason: 'no eligible node' };
    }
    const log = this.log.child({ jobId: job.jobId, nodeId: lease.nodeAddress });
    await this.repo.markDispatched(
      this.deps.pool,
      job.namespaceId,
      job.jobId,
      lease.nodeAddress,
      job.attempt + 1,
    );
    const started = Date.now();
    let result: NodeResult;
    try {
      result = await this.runWithTimeout(lease.nodeAddress, job);
    } catch (err) {
      log.info({ err }, 'node failed the job');
      await this.deps.matchmaking
        .complete(lease, 'failed')
        .catch((e: unknown) => log.warn({ err: e }, 'lease already gone'));
      if (lastAttempt) await this.finishFailed(job, 'failed');
      return {
        kind: 'failed',
        reason: err instanceof Error ? err.message : String(err),
        nodeId: lease.nodeAddress,
      };
    }
    // Only the node that still holds the lease (fencing token) may complete the job.
    await this.deps.matchmaking.complete(lease, 'ok');
    const hold = await this.deps.ledger.getHold(job.namespaceId, job.jobId);
    if (!hold) throw new AppError('hold_not_found', `job ${job.jobId} has no hold`);
    const cost = BigInt(result.tokensIn + result.tokensOut) * this.deps.options.pricePerTokenMicro;
    const charged = cost < hold.amount ? cost : hold.amount;
    await this.deps.ledger.settle(job.namespaceId, job.jobId, charged);
    const earning = (charged * this.deps.options.nodeSharePercent) / 100n;
    if (earning > 0n) await this.deps.ledger.creditEarning(lease.nodeAddress, job.jobId, earning);
    await this.repo.markTerminal(this.deps.pool, job.namespaceId, job.jobId, {
      status: 'succeeded',
      cost: charged,
      tokensIn: result.tokensIn,
      tokensOut: result.tokensOut,
      latencyMs: Date.now() - started,
      node: lease.nodeAddress,
    });
    await this.deps.routing
      .publishEvent('completed', job, { nodeId: lease.nodeAddress })
      .catch((err: unknown) => log.warn({ err }, 'completed event not published'));
    return { kind: 'done' };
  };

  /** The expiry path: the job's TTL passed before it ran; refund in full. */
  readonly onExpired = async (job: JobMessage): Promise<void> => {
    await this.finishFailed(job, 'expired');
  };

  private async finishFailed(
    job: Pick<JobMessage, 'namespaceId' | 'jobId'>,
    status: 'failed' | 'expired' | 'cancelled',
  ): Promise<void> {
    try {
      await this.deps.ledger.void(job.namespaceId, job.jobId);
    } catch (err) {
      // Already settled (a late success) or already released: the terminal state below stays single.
      if (!isAppError(err, 'hold_not_pending')) throw err;
    }
    await this.repo.markTerminal(this.deps.pool, job.namespaceId, job.jobId, { status, cost: 0n });
  }

  private async runWithTimeout(node: string, job: JobMessage): Promise<NodeResult> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.deps.options.jobTimeoutMs);
    try {
      return await Promise.race([
        this.deps.executor.run(node, job, ac.signal),
        new Promise<never>((_, reject) =>
          ac.signal.addEventListener('abort', () => reject(new Error(`node ${node} timed out`)), {
            once: true,
          }),
        ),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  statusCounts(namespaceId: string): Promise<Record<string, number>> {
    return this.repo.countByStatus(this.deps.pool, namespaceId);
  }
}
