// The job flow across the stores: submit (reservation + job row in one group-committed transaction, then a
// confirmed enqueue), dispatch (one Attempt: lease, deliver, outcome) with retry, and one place that closes a
// job (`close`: settle or void, the node's earning, the terminal row and the compact result in one
// group-committed finish transaction). Whoever closes the job's hold owns its terminal state, so a late
// success and a cancellation can never both count.
import { randomUUID } from 'node:crypto';
import { AppError, isAppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { Metrics } from '../../platform/metrics.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { LedgerService } from '../credits/index.js';
import type { MatchmakingService } from '../nodes/index.js';
import type { Environment, PriorityClass } from '../../config/vocabulary.js';
import type { JobMessage, JobOutcome, JobRequest, RoutingService } from '../routing/index.js';
import type { NodeExecutor } from './job.js';
import { costMicro, flatPrice, reservationMicro, type JobPrice, type PriceQuoter } from './job-price.js';
import { promptTokenBound } from './usage-bound.js';
import { Attempt, CapacityWaiters } from './jobs.attempt.js';
import { JobCloser, type Closed, type Closing, type JobRef } from './jobs.close.js';
import { JobCommits, type JobCommitOptions } from './jobs.commits.js';
import { fallbackEvent, type JobRecordSink } from './job-records.js';
import { parseStoredResult, type JobResult, type JobResults } from './job-results.js';
import { JobsRepository, type JobRow, type TerminalStatus } from './jobs.repository.js';
import { withPinnedSeed } from './qc-compare.js';
import type { SpotChecks } from './spot-check.service.js';

export type { NodeExecutor, NodeResult } from './job.js';

/**
 * How long a cancel waits for the stopped node's (cut) result before refunding the job: past the gateway's
 * grace for the node's answer (CANCEL_GRACE_MS, 3 s) plus the relay and the finish transaction.
 */
const INTERRUPT_WAIT_MS = 6_000;

export interface JobsOptions {
  /**
   * Micro-credits per token, input and output alike: the price of a job when no price table quotes one (no
   * `prices` given, or a message from before prices rode along).
   */
  pricePerTokenMicro: bigint;
  /** Share of the settled charge credited to the node operator, in percent. */
  nodeSharePercent: bigint;
  /** The one owner of the attempt limit: the last attempt's failure closes the job here. */
  maxAttempts: number;
  jobTimeoutMs: number;
  /** How long a dispatch waits for a busy network to free a node before the attempt counts as failed. */
  capacityWaitMs?: number;
  commits?: Partial<JobCommitOptions>;
}

export interface SubmitRequest {
  namespaceId: string;
  apiKeyId?: string;
  model: string;
  environment: Environment;
  priority: PriorityClass;
  /** The output tokens the reservation covers (every choice of an `n > 1` request). */
  maxTokens: number;
  /**
   * The prompt tokens it covers when there is no `request` (with one, the backbone's own bound on its prompt,
   * promptTokenBound, is used: what a node may bill at most). Default 0.
   */
  promptTokens?: number;
  ttlMs: number;
  /** A caller-chosen id (e.g. derived from an Idempotency-Key): submitting it again returns the first job. */
  jobId?: string;
  mode?: 'sync' | 'polling';
  request?: JobRequest;
  subcloud?: string | null;
  /** With a caller-chosen jobId: a hash of the request body; a replay with another body is refused (409). */
  requestHash?: string;
}

export interface SubmitResult {
  jobId: string;
  maxCost: bigint;
  /** False when the job id already existed (an idempotent retry): nothing new was reserved or enqueued. */
  created: boolean;
  /** The job row's creation time (its partition key). */
  createdAt: Date;
  /** The network config version whose prices the job is reserved and charged at. */
  priceVersion: number | null;
}

export class JobsService {
  private readonly repo = new JobsRepository();
  private readonly commits: JobCommits;
  private readonly closer: JobCloser;
  private readonly capacity = new CapacityWaiters();
  private readonly log: Logger;
  /** Dispatches running in this process (graceful shutdown waits for them). */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Dispatches per job id running in this process (a duplicated message makes two). */
  private readonly active = new Map<string, number>();
  /**
   * What a job submitted here needs for its record when it is closed without its message (a sync timeout's
   * cancel): its request and priority, until it closes (bounded; the oldest forgotten first, whose record then
   * lacks the input).
   */
  private readonly submissions = new Map<
    string,
    Pick<JobRef, 'request' | 'priority' | 'apiKeyId' | 'price'>
  >();
  /** The price of a job no price table quotes. */
  private readonly flat: JobPrice;

  constructor(
    private readonly deps: {
      pool: Pool;
      ledger: LedgerService;
      routing: RoutingService;
      matchmaking: MatchmakingService;
      executor: NodeExecutor;
      log: Logger;
      options: JobsOptions;
      /** The price table in force (the network config's); without one every job pays the flat price. */
      prices?: PriceQuoter;
      results?: JobResults;
      records?: JobRecordSink;
      metrics?: Metrics;
      /** Spot-check verification of a sampled share of succeeded jobs (after the client was answered). */
      spotChecks?: SpotChecks;
    },
  ) {
    this.log = deps.log.child({ component: 'jobs' });
    this.flat = flatPrice(deps.options.pricePerTokenMicro);
    this.commits = new JobCommits({
      pool: deps.pool,
      ledger: deps.ledger,
      log: this.log,
      ...(deps.options.commits ? { options: deps.options.commits } : {}),
    });
    this.closer = new JobCloser({
      commits: this.commits,
      ledger: deps.ledger,
      log: this.log,
      nodeSharePercent: deps.options.nodeSharePercent,
      ...(deps.results ? { results: deps.results } : {}),
      ...(deps.records ? { records: deps.records } : {}),
      ...(deps.metrics ? { metrics: deps.metrics } : {}),
    });
  }

  /** Transactions and jobs of the two batch kinds so far (benchmarks print them per job). */
  get commitStats(): JobCommits['stats'] {
    return this.commits.stats;
  }

  /** Reserves the maximum cost and writes the job row (one shared transaction), then enqueues it. */
  async submit(req: SubmitRequest): Promise<SubmitResult> {
    if (!Number.isSafeInteger(req.maxTokens) || req.maxTokens <= 0)
      throw new AppError('invalid_request', 'maxTokens must be a positive integer');
    if (req.promptTokens !== undefined && (!Number.isSafeInteger(req.promptTokens) || req.promptTokens < 0))
      throw new AppError('invalid_request', 'promptTokens must be a non-negative integer');
    const jobId = req.jobId ?? randomUUID();
    // The price in force now (in memory, no statement) is the job's for good: the row records its version and
    // the message carries it to dispatch, which settles at it even if the table changes meanwhile.
    const price = this.deps.prices
      ? await this.deps.prices.quote(req.model, req.environment, req.subcloud ?? null)
      : this.flat;
    const promptBound = req.request ? promptTokenBound(req.request) : (req.promptTokens ?? 0);
    const maxCost = reservationMicro(price, promptBound, req.maxTokens);
    const createdAt = new Date();
    const o = this.deps.options;
    // The hold outlives every retry and the TTL, so a late result can still settle; the sweeper refunds after.
    // Replaying a reservation with the same job id and amount is a no-op (another amount: idempotency_conflict).
    const reserve = this.deps.ledger.ops.reserve(
      req.namespaceId,
      jobId,
      maxCost,
      req.ttlMs + o.jobTimeoutMs * o.maxAttempts,
    );
    const row = {
      id: jobId,
      namespaceId: req.namespaceId,
      apiKeyId: req.apiKeyId ?? null,
      model: req.model,
      mode: req.mode ?? 'polling',
      priority: req.priority,
      environment: req.environment,
      maxCost,
      createdAt,
      requestHash: req.requestHash ?? null,
      priceVersion: price.version,
    } as const;
    const committed = await this.commits.submit({ row, reserve }).catch(async (err: unknown) => {
      // A replay priced at another table version (the table changed between the two) reserves another amount:
      // the ledger calls that a conflict, yet the job exists in this namespace and the replay answers it.
      if (!req.jobId || !isAppError(err, 'idempotency_conflict')) throw err;
      if (!(await this.repo.findJob(this.deps.pool, req.namespaceId, jobId))) throw err;
      return { created: false };
    });
    if (!committed.created) {
      // A replay (rare): the first job's row has its own partition key.
      const first = await this.repo.findJob(this.deps.pool, req.namespaceId, jobId);
      // The key names one request: the same key with another body is a client error, not a replay.
      if (first?.requestHash && req.requestHash && first.requestHash !== req.requestHash)
        throw new AppError(
          'idempotency_conflict',
          'this Idempotency-Key was already used with another request body; use a new key for a new request',
          { jobId },
        );
      return {
        jobId,
        maxCost: first?.maxCost ?? maxCost,
        created: false,
        createdAt: first?.createdAt ?? createdAt,
        priceVersion: first ? (first.priceVersion ?? null) : price.version,
      };
    }
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
      holdMicro: maxCost.toString(),
      ...(req.apiKeyId ? { apiKeyId: req.apiKeyId } : {}),
      createdAt: createdAt.toISOString(),
      price,
    };
    try {
      await this.deps.routing.submit(message);
    } catch (err) {
      // Never enqueued: refund now rather than at hold expiry.
      await this.close(
        { ...message, createdAt, apiKeyId: req.apiKeyId ?? null },
        { status: 'cancelled', code: 'not_enqueued', reason: 'the job could not be enqueued' },
      ).catch((e: unknown) => this.log.error({ err: e, jobId }, 'unenqueued job not refunded yet'));
      throw err;
    }
    this.commits.mark({ kind: 'published', id: jobId, createdAt });
    this.deps.metrics?.jobsSubmitted.inc({ model: req.model, mode: req.mode ?? 'polling' });
    // No job.submitted event: the finish carries the submission (one record document per job).
    this.submissions.set(jobId, {
      request: message.request,
      priority: message.priority,
      apiKeyId: req.apiKeyId ?? null,
      price,
    });
    if (this.submissions.size > 20_000) this.submissions.delete(this.submissions.keys().next().value!);
    return { jobId, maxCost, created: true, createdAt, priceVersion: price.version };
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
    this.capacity.stopping = true;
    this.capacity.wake();
    while (this.inFlight.size > 0 && Date.now() < until) {
      await Promise.race([
        Promise.allSettled([...this.inFlight]),
        new Promise((r) => setTimeout(r, Math.max(1, until - Date.now()))),
      ]);
    }
    // Spot checks started here settle before the stores close (what is left is only a sample that is lost).
    await this.deps.spotChecks?.drain(Math.max(0, until - Date.now()));
    return this.inFlight.size;
  }

  /** Waits for the batched commits to finish (after drain; before the pool closes). */
  stop(): Promise<void> {
    return this.commits.stop();
  }

  private async dispatch(message: JobMessage): Promise<JobOutcome> {
    const ctx = await this.contextOf(message);
    if (!ctx) return { kind: 'done' };
    const { job, hold } = ctx;
    const attempt = new Attempt(
      {
        matchmaking: this.deps.matchmaking,
        executor: this.deps.executor,
        capacity: this.capacity,
        jobTimeoutMs: this.deps.options.jobTimeoutMs,
        capacityWaitMs: this.deps.options.capacityWaitMs ?? 0,
        activeHere: (id) => this.active.get(id) ?? 0,
        log: this.log,
      },
      message,
    );
    const lastAttempt = message.attempt + 1 >= this.deps.options.maxAttempts;
    const out = await attempt.run();
    if (out.kind === 'duplicate') return { kind: 'done' };
    if (out.kind === 'handback') return { kind: 'handback' };
    if (out.kind === 'failed') {
      this.deps.metrics?.jobAttemptsFailed.inc();
      if (out.nodeAddress)
        void this.emit([fallbackEvent(message, out.nodeAddress, `${out.cause}: ${out.reason}`)]);
      if (lastAttempt)
        await this.close(job, {
          status: 'failed',
          code: out.cause === 'no_capacity' ? 'no_capacity' : 'job_failed',
          reason: out.reason,
          cause: out.cause,
          nodeAddress: out.nodeAddress ?? null,
          assignedAt: out.assignedAt ?? null,
        });
      return {
        kind: 'failed',
        reason: out.reason,
        cause: out.cause,
        ...(out.nodeAddress ? { nodeId: out.nodeAddress } : {}),
      };
    }
    // No job.assigned event: the node and assignedAt travel in the finished event (routing of the job document).
    // Usage is already capped at the backbone's bounds (the attempt's boundUsage); never more than the hold.
    const result = out.result;
    // At the job's own price (from its message; the flat one for a message from before prices rode along).
    const cost = costMicro(job.price ?? this.flat, result.tokensIn, result.tokensOut);
    const charged = cost < hold ? cost : hold;
    const closed = await this.close(job, { status: 'succeeded', ...out, charged });
    if (!closed.closed) this.log.info({ jobId: job.jobId }, 'result discarded: the job was closed otherwise');
    // The client has its answer (close stored it): a sampled check runs from here, off the consumer's path.
    else if (closed.status === 'succeeded')
      this.deps.spotChecks?.consider({
        message: withPinnedSeed(message),
        lease: out.lease,
        result,
        charged,
        price: job.price ?? this.flat,
      });
    return { kind: 'done' };
  }

  /**
   * What dispatch knows of the job. From the message alone (hold amount and partition key ride along); a
   * message from before they did costs one read of the row and hold, and a job found closed is done.
   */
  private async contextOf(m: JobMessage): Promise<{ job: JobRef; hold: bigint } | undefined> {
    const apiKeyId = m.apiKeyId ?? null;
    const base = { ...m, apiKeyId };
    if (m.holdMicro && m.createdAt)
      return { job: { ...base, createdAt: new Date(m.createdAt) }, hold: BigInt(m.holdMicro) };
    const [row, hold] = await Promise.all([
      this.repo.findJob(this.deps.pool, m.namespaceId, m.jobId),
      this.deps.ledger.getHold(m.namespaceId, m.jobId),
    ]);
    if (!row || (row.status !== 'queued' && row.status !== 'dispatched')) return undefined;
    const job = { ...base, createdAt: row.createdAt, apiKeyId: row.apiKeyId };
    if (!hold || hold.status !== 'pending') {
      // A hold closed before the row moved (older code, or no hold at all): close the row the same way.
      if (hold?.status === 'posted')
        await this.finishPosted(job, m.environment, hold.settledAmount ?? 0n, row.nodeAddress);
      else
        await this.close(job, {
          status: hold?.status === 'expired' ? 'expired' : 'cancelled',
          code: hold?.status === 'expired' ? 'expired' : 'cancelled',
          reason: 'hold closed',
        });
      return undefined;
    }
    return { job, hold: hold.amount };
  }

  /** Re-drives the earning and terminal row of a job whose settle committed alone (before the finish tx). */
  private async finishPosted(
    job: JobRef,
    environment: JobMessage['environment'],
    charged: bigint,
    node: string | null,
  ): Promise<void> {
    const lease = {
      jobId: job.jobId,
      environment,
      nodeAddress: node ?? '',
      fencingToken: '',
      expiresAtMs: 0,
    } as const;
    const result = { tokensIn: 0, tokensOut: 0, output: '' };
    await this.close(job, {
      status: 'succeeded',
      lease,
      result,
      charged,
      assignedAt: new Date(),
      executionMs: 0,
    });
  }

  /** The expiry path: the job's TTL passed before it ran; refund in full. */
  readonly onExpired = async (m: JobMessage): Promise<void> => {
    const ctx = m.createdAt
      ? { ...m, createdAt: new Date(m.createdAt) }
      : await this.refOf(m.namespaceId, m.jobId);
    if (!ctx) return;
    await this.close(ctx, {
      status: 'expired',
      code: 'expired',
      reason: 'the job expired before a node ran it',
    });
  };

  /**
   * Cancels a job that is not terminal yet (a sync request that timed out): refunds it in full. A node result
   * arriving afterwards is discarded. Returns the job's terminal status (which may be another one if the job
   * finished first: whoever closed the hold decided it).
   */
  async cancel(
    namespaceId: string,
    jobId: string,
    reason: string,
    known?: { createdAt: Date; model: string },
  ): Promise<TerminalStatus | undefined> {
    const ref = known ? { namespaceId, jobId, attempt: 0, ...known } : await this.refOf(namespaceId, jobId);
    if (!ref) throw new AppError('not_found', `no job ${jobId} in this namespace`);
    const closed = await this.close(ref, { status: 'cancelled', code: 'cancelled', reason });
    if (closed.closed) return 'cancelled';
    const hold = await this.deps.ledger.getHold(namespaceId, jobId);
    if (hold?.status === 'posted') return 'succeeded';
    const row = await this.repo.findJob(this.deps.pool, namespaceId, jobId);
    return row?.status === 'queued' || row?.status === 'dispatched' ? undefined : row?.status;
  }

  /**
   * Cancels a job for its client (POST /v1/jobs/:id/cancel, or a client that left): a job no node holds is
   * refunded in full; one running on a node is stopped there (a cancel frame, relayed to the node's process)
   * and ends cancelled, charged for its prompt and the output `delivered` (a count of streamed deltas the
   * client received; 0: none; absent: all the node produced, which becomes the job's result), in the finish
   * transaction that closes its hold, with the node's share. A node that does not answer within the grace is
   * cut without its prompt; no answer at all (a lost message) refunds the job after `waitMs`. Returns the
   * job's terminal status (another one when the job ended first).
   */
  async interrupt(
    namespaceId: string,
    jobId: string,
    opts: {
      reason: string;
      delivered?: number;
      known?: { createdAt: Date; model: string; environment: JobMessage['environment'] };
      waitMs?: number;
    },
  ): Promise<TerminalStatus | undefined> {
    let known = opts.known;
    if (!known) {
      const row = await this.repo.findJob(this.deps.pool, namespaceId, jobId);
      if (!row) throw new AppError('not_found', `no job ${jobId} in this namespace`);
      if (row.status !== 'queued' && row.status !== 'dispatched') return row.status;
      known = { createdAt: row.createdAt, model: row.model, environment: row.environment ?? 'testnet' };
    }
    const { executor, results } = this.deps;
    const lease = await this.deps.matchmaking.findLease(known.environment, jobId);
    if (lease && executor.cancel && results) {
      await executor.cancel(jobId, opts.delivered);
      const r = await results.wait(jobId, opts.waitMs ?? INTERRUPT_WAIT_MS);
      if (r) return r.status;
    }
    const ref = { createdAt: known.createdAt, model: known.model };
    return this.cancel(namespaceId, jobId, opts.reason, ref);
  }

  /** Tells the job's node, if one runs it, to stop (a job refunded meanwhile: its result is discarded anyway). */
  stopOnNode(jobId: string): void {
    void this.deps.executor
      .cancel?.(jobId, 0)
      .catch((err: unknown) => this.log.warn({ err, jobId }, 'job cancel not sent to its node'));
  }

  private async refOf(namespaceId: string, jobId: string): Promise<JobRef | undefined> {
    const row = await this.repo.findJob(this.deps.pool, namespaceId, jobId);
    if (!row) return undefined;
    return {
      namespaceId,
      jobId,
      model: row.model,
      attempt: Math.max(0, row.attempts - 1),
      createdAt: row.createdAt,
      apiKeyId: row.apiKeyId,
    };
  }

  /** A job of this namespace (another namespace's job is not found), with its result when it has one. */
  async getJob(
    namespaceId: string,
    jobId: string,
  ): Promise<{ row: JobRow; result?: JobResult; resultExpired?: true } | undefined> {
    const row = await this.repo.findJob(this.deps.pool, namespaceId, jobId);
    if (!row) return undefined;
    const open = row.status === 'queued' || row.status === 'dispatched';
    // Dispatch writes nothing to the row until the job closes: a job running in this process shows as
    // dispatched (in another process it reads 'queued' until its finish transaction).
    if (row.status === 'queued' && this.active.has(jobId)) row.status = 'dispatched';
    // The Redis copy (JOB_RESULT_TTL_MS, an hour) never outlives the shortest retention (one day).
    const cached = await this.redisResult(namespaceId, jobId);
    if (cached || open) return cached ? { row, result: cached } : { row };
    const stored = await this.repo.findRetainedResult(this.deps.pool, namespaceId, jobId);
    const result = stored && stored !== 'expired' ? parseStoredResult(stored.result) : undefined;
    if (result) return { row, result };
    // A closed job's result row is written in its finish transaction: none (or one past the namespace's
    // retention) means its output is gone, which a succeeded job must say rather than show no output.
    return row.status === 'succeeded' ? { row, resultExpired: true } : { row };
  }

  /** A finished job's result: from Redis, or from its PostgreSQL result row when Redis lost it. */
  async getResult(namespaceId: string, jobId: string): Promise<JobResult | undefined> {
    const cached = await this.redisResult(namespaceId, jobId);
    if (cached) return cached;
    return parseStoredResult(await this.repo.findResult(this.deps.pool, namespaceId, jobId));
  }

  private async redisResult(namespaceId: string, jobId: string): Promise<JobResult | undefined> {
    const r = await this.deps.results?.get(jobId).catch(() => undefined);
    return r && r.namespaceId === namespaceId ? r : undefined;
  }

  /** Closes a job (see JobCloser.close): the one way any path ends one. */
  close(job: JobRef, c: Closing): Promise<Closed> {
    const known = this.submissions.get(job.jobId);
    if (!known) return this.closer.close(job, c);
    const ref: JobRef = {
      ...job,
      request: job.request ?? known.request,
      priority: job.priority ?? known.priority,
      apiKeyId: job.apiKeyId ?? known.apiKeyId,
      price: job.price ?? known.price,
    };
    return this.closer.close(ref, c).then((closed) => {
      this.submissions.delete(job.jobId); // closed here or already by another path: not needed any more
      return closed;
    });
  }

  private emit(events: Parameters<JobRecordSink['publish']>[0]): Promise<boolean> {
    return this.closer.emit(events);
  }

  statusCounts(namespaceId: string): Promise<Record<string, number>> {
    return this.repo.countByStatus(this.deps.pool, namespaceId);
  }
}
