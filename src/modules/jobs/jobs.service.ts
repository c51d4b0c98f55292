// The job flow across the stores: submit (reserve, job row, confirmed enqueue), dispatch (select-and-lease,
// deliver to the node, verify the lease, settle once, credit the node, release) with retry, refund, expiry and
// cancellation. Whoever closes the job's hold in the ledger (settle or void) owns its terminal transition,
// so a late success and a cancellation can never both count.
import { randomUUID } from 'node:crypto';
import { AppError, isAppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { Metrics } from '../../platform/metrics.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { LedgerService } from '../credits/index.js';
import type { Lease, MatchmakingService } from '../nodes/index.js';
import type { JobMessage, JobOutcome, JobRequest, PriorityClass, RoutingService } from '../routing/index.js';
import {
  assignedEvent,
  fallbackEvent,
  finishedEvent,
  submittedEvent,
  type JobRecordSink,
} from './job-records.js';
import type { JobResult, JobResults } from './job-results.js';
import { JobsRepository, type JobRow, type TerminalStatus } from './jobs.repository.js';

/** What a node reports for a job it ran. */
export interface NodeResult {
  tokensIn: number;
  tokensOut: number;
  output: string;
  embeddings?: number[][];
  finishReason?: 'stop' | 'length';
}

/** Delivers a job to the node holding its lease and returns that node's verified result. */
export interface NodeExecutor {
  run(lease: Lease, job: JobMessage, signal: AbortSignal): Promise<NodeResult>;
}

export interface JobsOptions {
  /** Micro-credits per token (input and output alike; a price table per model is the next step). */
  pricePerTokenMicro: bigint;
  /** Share of the settled charge credited to the node operator, in percent. */
  nodeSharePercent: bigint;
  maxAttempts: number;
  jobTimeoutMs: number;
  /** How long a dispatch waits for a busy network to free a node before the attempt counts as failed. */
  capacityWaitMs?: number;
}

export interface SubmitRequest {
  namespaceId: string;
  apiKeyId?: string;
  model: string;
  environment: 'testnet' | 'mainnet';
  priority: PriorityClass;
  maxTokens: number;
  ttlMs: number;
  /** A caller-chosen id (e.g. derived from an Idempotency-Key): submitting it again returns the first job. */
  jobId?: string;
  mode?: 'sync' | 'polling';
  request?: JobRequest;
  subcloud?: string | null;
}

export interface SubmitResult {
  jobId: string;
  maxCost: bigint;
  /** False when the job id already existed (an idempotent retry): nothing new was reserved or enqueued. */
  created: boolean;
  /** The new job's creation time (on a replay, the time of the retry; the first job's row has its own). */
  createdAt: Date;
}

export class JobsService {
  private readonly repo = new JobsRepository();
  private readonly log: Logger;
  /** Dispatches running in this process (graceful shutdown waits for them). */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Dispatches waiting for a free node; woken when this process releases a lease. */
  private readonly capacityWaiters = new Set<() => void>();
  /** Dispatches per job id running in this process (a duplicated message makes two). */
  private readonly active = new Map<string, number>();
  private stopping = false;

  constructor(
    private readonly deps: {
      pool: Pool;
      ledger: LedgerService;
      routing: RoutingService;
      matchmaking: MatchmakingService;
      executor: NodeExecutor;
      log: Logger;
      options: JobsOptions;
      results?: JobResults;
      records?: JobRecordSink;
      metrics?: Metrics;
    },
  ) {
    this.log = deps.log.child({ component: 'jobs' });
  }

  /** Reserves the maximum cost, records the job and enqueues it; accepted once the broker confirms. */
  async submit(req: SubmitRequest): Promise<SubmitResult> {
    if (!Number.isSafeInteger(req.maxTokens) || req.maxTokens <= 0)
      throw new AppError('invalid_request', 'maxTokens must be a positive integer');
    const jobId = req.jobId ?? randomUUID();
    const maxCost = BigInt(req.maxTokens) * this.deps.options.pricePerTokenMicro;
    const createdAt = new Date();
    // The hold outlives every retry and the TTL, so a late result can still settle; the sweeper refunds after.
    // Replaying a reservation with the same job id and amount is a no-op (another amount: idempotency_conflict).
    await this.deps.ledger.reserve(
      req.namespaceId,
      jobId,
      maxCost,
      req.ttlMs + this.deps.options.jobTimeoutMs * this.deps.options.maxAttempts,
    );
    const inserted = await this.repo.insertJob(this.deps.pool, {
      id: jobId,
      namespaceId: req.namespaceId,
      apiKeyId: req.apiKeyId ?? null,
      model: req.model,
      mode: req.mode ?? 'polling',
      priority: req.priority,
      environment: req.environment,
      maxCost,
      createdAt,
    });
    if (!inserted) return { jobId, maxCost, created: false, createdAt };
    const message: JobMessage = {
      v: 1,
      jobId,
      namespaceId: req.namespaceId,
      model: req.model,
      environment: req.environment,
      priority: req.priority,
      subcloud: req.subcloud ?? null,
      attempt: 0,
      excludedNodeIds: [],
      failures: [],
      // Set after the reservation and the row: dispatch latency is measured from here (TTL counts from here too).
      enqueuedAt: new Date().toISOString(),
      ttlMs: req.ttlMs,
      ...(req.request ? { request: req.request } : {}),
    };
    try {
      await this.deps.routing.submit(message);
    } catch (err) {
      // Never enqueued: refund now rather than at hold expiry.
      await this.finishFailed(message, 'cancelled', 'the job could not be enqueued');
      throw err;
    }
    this.deps.metrics?.jobsSubmitted.inc({ model: req.model, mode: req.mode ?? 'polling' });
    this.emit([submittedEvent(message, req.apiKeyId ?? null)]);
    return { jobId, maxCost, created: true, createdAt };
  }

  /** The consumer's handler: returns only after the job's outcome is committed in PostgreSQL. */
  readonly handle = (job: JobMessage): Promise<JobOutcome> => {
    this.active.set(job.jobId, (this.active.get(job.jobId) ?? 0) + 1);
    const p = this.dispatch(job);
    this.inFlight.add(p);
    return p.finally(() => {
      this.inFlight.delete(p);
      const n = (this.active.get(job.jobId) ?? 1) - 1;
      if (n > 0) this.active.set(job.jobId, n);
      else this.active.delete(job.jobId);
    });
  };

  /** Resolves when every dispatch running in this process has finished (or the deadline passed). */
  async drain(deadlineMs: number): Promise<number> {
    const until = Date.now() + deadlineMs;
    // Waiting dispatches give up now (their deliveries go back for another process) instead of at their deadline.
    this.stopping = true;
    this.wakeCapacityWaiters();
    while (this.inFlight.size > 0 && Date.now() < until) {
      await Promise.race([
        Promise.allSettled([...this.inFlight]),
        new Promise((r) => setTimeout(r, Math.max(1, until - Date.now()))),
      ]);
    }
    return this.inFlight.size;
  }

  private async dispatch(job: JobMessage): Promise<JobOutcome> {
    const [row, hold] = await Promise.all([
      this.repo.findJob(this.deps.pool, job.namespaceId, job.jobId),
      this.deps.ledger.getHold(job.namespaceId, job.jobId),
    ]);
    if (!row || (row.status !== 'queued' && row.status !== 'dispatched')) return { kind: 'done' };
    if (hold && hold.status !== 'pending') {
      // A crash after the ledger closed the hold and before the row moved: finish the row the same way.
      if (hold.status === 'posted') {
        // The node's earning is idempotent by job id: credit it here too in case the crash came before it.
        const charged = hold.settledAmount ?? 0n;
        const earning = (charged * this.deps.options.nodeSharePercent) / 100n;
        if (earning > 0n && row.nodeAddress)
          await this.deps.ledger.creditEarning(row.nodeAddress, job.jobId, earning);
        await this.repo.markTerminal(this.deps.pool, job.namespaceId, job.jobId, {
          status: 'succeeded',
          cost: charged,
        });
      } else await this.finishFailed(job, hold.status === 'expired' ? 'expired' : 'cancelled', 'hold closed');
      return { kind: 'done' };
    }
    const lastAttempt = job.attempt + 1 >= this.deps.options.maxAttempts;
    const lease = await this.leaseWhenFree(job);
    if (!lease) {
      if (lastAttempt) await this.finishFailed(job, 'failed', 'no eligible node');
      return { kind: 'failed', reason: 'no eligible node' };
    }
    const log = this.log.child({ jobId: job.jobId, nodeId: lease.nodeAddress });
    // A duplicated message (e.g. a retry copy and a redelivery) while this process runs the job: the running
    // dispatch owns the job and its lease, so this copy is simply acknowledged. A lease held with no dispatch
    // here is taken over (its dispatcher may have crashed: the job runs again on the same node); a duplicate
    // running in another process at the same moment is not told apart from that.
    if (lease.held && (this.active.get(job.jobId) ?? 0) > 1) {
      log.info('duplicate job message while the job runs here: acknowledged');
      return { kind: 'done' };
    }
    const assignedAt = new Date();
    try {
      return await this.runLeased(job, row, hold, lease, lastAttempt, assignedAt, log);
    } catch (err) {
      // An unexpected error (a store failing mid-way): give the node back now rather than at lease expiry,
      // and on the last attempt close the job (refund) instead of leaving it dispatched for the reconciler.
      await this.deps.matchmaking.complete(lease, 'failed').catch(() => undefined);
      this.wakeCapacityWaiters();
      if (lastAttempt)
        await this.finishFailed(job, 'failed', err instanceof Error ? err.message : String(err)).catch(
          (e: unknown) => log.error({ err: e }, 'could not close the job after an error'),
        );
      throw err;
    }
  }

  private async runLeased(
    job: JobMessage,
    row: JobRow,
    hold: NonNullable<Awaited<ReturnType<LedgerService['getHold']>>> | undefined,
    lease: Lease,
    lastAttempt: boolean,
    assignedAt: Date,
    log: Logger,
  ): Promise<JobOutcome> {
    await this.repo.markDispatched(
      this.deps.pool,
      job.namespaceId,
      job.jobId,
      lease.nodeAddress,
      job.attempt + 1,
    );
    this.emit([assignedEvent(job, lease.nodeAddress, assignedAt)]);
    const started = performance.now();
    let result: NodeResult;
    try {
      result = await this.runWithTimeout(lease, job);
      // Only the node that still holds the lease (fencing token) may complete the job.
      await this.deps.matchmaking.complete(lease, 'ok').finally(() => this.wakeCapacityWaiters());
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      log.info({ err }, 'attempt failed');
      this.deps.metrics?.jobAttemptsFailed.inc();
      await this.deps.matchmaking
        .complete(lease, 'failed')
        .catch((e: unknown) => log.warn({ err: e }, 'lease already gone'))
        .finally(() => this.wakeCapacityWaiters());
      this.emit([fallbackEvent(job, lease.nodeAddress, reason)]);
      if (lastAttempt) await this.finishFailed(job, 'failed', reason, lease.nodeAddress);
      return { kind: 'failed', reason, nodeId: lease.nodeAddress };
    }
    const executionMs = performance.now() - started;
    // The hold's amount never changes once reserved: the one read at the start is enough.
    if (!hold) throw new AppError('hold_not_found', `job ${job.jobId} has no hold`);
    // A node cannot bill more output than the request allowed.
    result.tokensOut = Math.min(result.tokensOut, job.request?.maxTokens ?? result.tokensOut);
    const cost = BigInt(result.tokensIn + result.tokensOut) * this.deps.options.pricePerTokenMicro;
    const charged = cost < hold.amount ? cost : hold.amount;
    try {
      await this.deps.ledger.settle(job.namespaceId, job.jobId, charged);
    } catch (err) {
      // Cancelled or expired while it ran: the void won, the result is discarded and nothing is charged.
      if (isAppError(err, 'hold_not_pending')) {
        log.info('result discarded: the job was closed while it ran');
        return { kind: 'done' };
      }
      throw err;
    }
    const earning = (charged * this.deps.options.nodeSharePercent) / 100n;
    await this.finished(
      row,
      job,
      {
        status: 'succeeded',
        output: {
          text: result.output,
          ...(result.embeddings ? { embeddings: result.embeddings } : {}),
          finishReason: result.finishReason ?? 'stop',
        },
        usage: { promptTokens: result.tokensIn, completionTokens: result.tokensOut },
        costMicro: charged.toString(),
        nodeAddress: lease.nodeAddress,
      },
      { assignedAt, executionMs },
      // The settle made this path the owner of the outcome: the result is stored before the row turns
      // terminal, so a poller never sees 'succeeded' without it. Earning and row are independent (each
      // idempotent by job id) and written together.
      () =>
        Promise.all([
          earning > 0n ? this.deps.ledger.creditEarning(lease.nodeAddress, job.jobId, earning) : undefined,
          this.repo.markTerminal(this.deps.pool, job.namespaceId, job.jobId, {
            status: 'succeeded',
            cost: charged,
            tokensIn: result.tokensIn,
            tokensOut: result.tokensOut,
            latencyMs: Math.round(executionMs),
            node: lease.nodeAddress,
          }),
        ]),
    );
    // A lifecycle event for observers: the outcome is already committed, so the ack does not wait for it.
    void this.deps.routing
      .publishEvent('completed', job, { nodeId: lease.nodeAddress })
      .catch((err: unknown) => log.warn({ err }, 'completed event not published'));
    return { kind: 'done' };
  }

  /**
   * Select-and-lease, waiting up to capacityWaitMs while every eligible node is busy: a full network is
   * backpressure (the delivery stays unacked), not a failed attempt. A lease released in this process wakes the
   * waiters at once; releases elsewhere are seen by polling.
   */
  private async leaseWhenFree(job: JobMessage): Promise<Lease | undefined> {
    const deadline = Date.now() + (this.deps.options.capacityWaitMs ?? 0);
    let pollMs = 5;
    for (;;) {
      const lease = await this.deps.matchmaking.selectAndLease({
        jobId: job.jobId,
        environment: job.environment,
        model: job.model,
        excludeNodes: job.excludedNodeIds,
        ...(job.subcloud ? { subcloudId: job.subcloud } : {}),
      });
      const left = deadline - Date.now();
      if (lease || left <= 0 || this.stopping) return lease;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(pollMs, left));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.capacityWaiters.add(done);
      });
      pollMs = Math.min(pollMs * 2, 50);
    }
  }

  private wakeCapacityWaiters(): void {
    const waiters = [...this.capacityWaiters];
    this.capacityWaiters.clear();
    for (const w of waiters) w();
  }

  /** The expiry path: the job's TTL passed before it ran; refund in full. */
  readonly onExpired = async (job: JobMessage): Promise<void> => {
    await this.finishFailed(job, 'expired', 'the job expired before a node ran it');
  };

  /**
   * Cancels a job that is not terminal yet (a sync request that timed out): refunds it in full. A node result
   * arriving afterwards is discarded. Returns the job's terminal status (which may be another one if the job
   * finished first).
   */
  async cancel(namespaceId: string, jobId: string, reason: string): Promise<TerminalStatus | undefined> {
    const row = await this.repo.findJob(this.deps.pool, namespaceId, jobId);
    if (!row) throw new AppError('not_found', `no job ${jobId} in this namespace`);
    if (row.status === 'queued' || row.status === 'dispatched')
      await this.finishFailed({ ...jobOfRow(row) }, 'cancelled', reason);
    const after = await this.repo.findJob(this.deps.pool, namespaceId, jobId);
    if (after?.status === 'queued' || after?.status === 'dispatched') {
      // The void lost to a settle: the job succeeded (its row turns terminal a moment later).
      const hold = await this.deps.ledger.getHold(namespaceId, jobId);
      if (hold?.status === 'posted') return 'succeeded';
    }
    return after?.status as TerminalStatus | undefined;
  }

  /** A job of this namespace (another namespace's job is not found), with its result when it has one. */
  async getJob(namespaceId: string, jobId: string): Promise<{ row: JobRow; result?: JobResult } | undefined> {
    const row = await this.repo.findJob(this.deps.pool, namespaceId, jobId);
    if (!row) return undefined;
    const result = await this.deps.results?.get(jobId);
    return result && result.namespaceId === namespaceId ? { row, result } : { row };
  }

  private async finishFailed(
    job: Pick<JobMessage, 'namespaceId' | 'jobId' | 'model' | 'request' | 'enqueuedAt' | 'attempt'>,
    status: 'failed' | 'expired' | 'cancelled',
    reason: string,
    nodeAddress?: string,
  ): Promise<void> {
    try {
      await this.deps.ledger.void(job.namespaceId, job.jobId);
    } catch (err) {
      if (!isAppError(err, 'hold_not_pending') && !isAppError(err, 'hold_not_found')) throw err;
      // Settled by a success that is finishing right now: that path owns the terminal state.
      const hold = await this.deps.ledger.getHold(job.namespaceId, job.jobId);
      if (hold?.status === 'posted') return;
    }
    const row = await this.repo.findJob(this.deps.pool, job.namespaceId, job.jobId);
    const changed = await this.repo.markTerminal(this.deps.pool, job.namespaceId, job.jobId, {
      status,
      cost: 0n,
    });
    if (!changed || !row) return;
    await this.finished(
      row,
      job,
      { status, costMicro: '0', error: reason, nodeAddress: nodeAddress ?? row.nodeAddress },
      { assignedAt: row.dispatchedAt, executionMs: 0 },
    );
  }

  /** After the terminal transition: the result for waiters, the record event, the metrics. */
  private async finished(
    row: JobRow,
    job: Pick<JobMessage, 'model' | 'request' | 'attempt'>,
    r: Pick<JobResult, 'status' | 'costMicro' | 'nodeAddress'> & Partial<JobResult>,
    timing: { assignedAt: Date | null; executionMs: number },
    /** Commits the terminal state after the result is stored (when the caller owns the outcome already). */
    commit?: () => Promise<unknown>,
  ): Promise<void> {
    const result: JobResult = {
      v: 1,
      jobId: row.id,
      namespaceId: row.namespaceId,
      model: job.model,
      kind: job.request?.kind ?? 'completion',
      attempts: Math.max(row.attempts, job.attempt + 1),
      createdAt: row.createdAt.toISOString(),
      finishedAt: new Date().toISOString(),
      ...r,
    };
    await this.deps.results
      ?.put(result)
      .catch((err: unknown) => this.log.warn({ err, jobId: row.id }, 'result not stored in Redis'));
    await commit?.();
    this.deps.metrics?.jobsFinished.inc({ status: r.status });
    this.deps.metrics?.jobLatency.observe((Date.now() - row.createdAt.getTime()) / 1000);
    this.emit([finishedEvent(result, timing)]);
  }

  private emit(events: Parameters<JobRecordSink['publish']>[0]): void {
    this.deps.records
      ?.publish(events)
      .catch((err: unknown) => this.log.warn({ err }, 'record events not published'));
  }

  private async runWithTimeout(lease: Lease, job: JobMessage): Promise<NodeResult> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.deps.options.jobTimeoutMs);
    try {
      return await Promise.race([
        this.deps.executor.run(lease, job, ac.signal),
        new Promise<never>((_, reject) =>
          ac.signal.addEventListener(
            'abort',
            () => reject(new Error(`node ${lease.nodeAddress} timed out`)),
            { once: true },
          ),
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

function jobOfRow(
  row: JobRow,
): Pick<JobMessage, 'namespaceId' | 'jobId' | 'model' | 'enqueuedAt' | 'attempt'> {
  return {
    namespaceId: row.namespaceId,
    jobId: row.id,
    model: row.model,
    enqueuedAt: row.createdAt.toISOString(),
    attempt: Math.max(0, row.attempts - 1),
  };
}
