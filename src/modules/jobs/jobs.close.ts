// The one place a job is closed: its hold operation (settle + the node's earning, or void), the terminal row
// and the compact result commit together in a shared finish transaction; then the result goes to the waiters
// and its one record event (job.finished, carrying the submission) to the record stream.
import { DEFAULT_PRIORITY_CLASS } from '../../config/vocabulary.js';
import type { Logger } from '../../platform/logger.js';
import type { Metrics } from '../../platform/metrics.js';
import type { LedgerOp, LedgerService } from '../credits/index.js';
import type { Lease } from '../nodes/index.js';
import type { AttemptCause, JobMessage } from '../routing/index.js';
import { finishedEvent, type JobRecordSink } from './job-records.js';
import type { JobErrorCode, JobResult, JobResults } from './job-results.js';
import type { JobCommits } from './jobs.commits.js';
import type { TerminalStatus } from './jobs.repository.js';
import type { NodeResult } from './job.js';

/** What identifies a job for closing it: its namespace, id, partition key, and what its result shows. */
export type JobRef = Pick<JobMessage, 'namespaceId' | 'jobId' | 'model' | 'attempt'> &
  Partial<Pick<JobMessage, 'request' | 'priority' | 'failures' | 'price'>> & {
    createdAt: Date;
    apiKeyId?: string | null;
  };

/** How a job ends: a node's result, or a refund with a code. */
export type Closing =
  | {
      status: 'succeeded';
      lease: Lease;
      result: NodeResult;
      charged: bigint;
      assignedAt: Date;
      executionMs: number;
    }
  | {
      status: 'failed' | 'expired' | 'cancelled';
      code: JobErrorCode;
      reason: string;
      nodeAddress?: string | null;
      cause?: AttemptCause;
      assignedAt?: Date | null;
    };

export type Closed = { closed: true; status: TerminalStatus } | { closed: false; by: 'other' | 'done' };

export class JobCloser {
  private readonly log: Logger;

  constructor(
    private readonly deps: {
      commits: JobCommits;
      ledger: LedgerService;
      log: Logger;
      nodeSharePercent: bigint;
      results?: JobResults;
      records?: JobRecordSink;
      metrics?: Metrics;
    },
  ) {
    this.log = deps.log;
  }

  /**
   * The one place a job is closed: its hold operation (settle + the node's earning, or void), the terminal
   * row and the compact result commit together in a shared finish transaction; then the result goes to the
   * waiters and the record events to the record stream (their confirmation is marked on the result row, and
   * the recovery task re-emits what was not confirmed).
   */
  async close(job: JobRef, c: Closing): Promise<Closed> {
    const now = new Date();
    const attempts = job.attempt + 1;
    // A job cut at a cancel ends cancelled, yet with its node's (partial) result and charged for what reached
    // the client: settled when that charge is positive, voided otherwise (so a cancelled job is settled exactly
    // when its cost is above zero).
    const cut = c.status === 'succeeded' && c.result.cancelled === true;
    const charges = c.status === 'succeeded' && (!cut || c.charged > 0n);
    const result: JobResult = {
      v: 1,
      jobId: job.jobId,
      namespaceId: job.namespaceId,
      model: job.model,
      kind: job.request?.kind ?? 'completion',
      attempts,
      createdAt: job.createdAt.toISOString(),
      finishedAt: now.toISOString(),
      ...(job.price ? { price: job.price } : {}),
      ...(c.status === 'succeeded'
        ? {
            status: cut ? 'cancelled' : 'succeeded',
            ...(cut
              ? {
                  errorCode: 'cancelled' as const,
                  error: `cancelled while running; charged for the ${c.result.tokensIn} prompt and ${c.result.tokensOut} output tokens delivered`,
                }
              : {}),
            output: {
              text: c.result.output,
              ...(c.result.embeddings ? { embeddings: c.result.embeddings } : {}),
              ...(c.result.finishReason || !cut ? { finishReason: c.result.finishReason ?? 'stop' } : {}),
              ...(c.result.toolCalls?.length ? { toolCalls: c.result.toolCalls } : {}),
              ...(c.result.logprobs ? { logprobs: c.result.logprobs } : {}),
              ...(c.result.choices?.length
                ? {
                    choices: c.result.choices.map((x) => ({
                      text: x.output,
                      finishReason: x.finishReason ?? 'stop',
                      ...(x.toolCalls?.length ? { toolCalls: x.toolCalls } : {}),
                      ...(x.logprobs ? { logprobs: x.logprobs } : {}),
                    })),
                  }
                : {}),
            },
            usage: { promptTokens: c.result.tokensIn, completionTokens: c.result.tokensOut },
            costMicro: charges ? c.charged.toString() : '0',
            nodeAddress: c.lease.nodeAddress || null,
          }
        : {
            status: c.status,
            costMicro: '0',
            error: c.reason,
            errorCode: c.code,
            ...(c.cause ? { cause: c.cause } : {}),
            nodeAddress: c.nodeAddress ?? null,
          }),
    };
    const timing =
      c.status === 'succeeded'
        ? { assignedAt: c.assignedAt, executionMs: c.executionMs }
        : { assignedAt: c.assignedAt ?? null, executionMs: 0 };
    const ledger = this.deps.ledger.ops;
    const ops: LedgerOp[] = [];
    if (c.status === 'succeeded' && charges) {
      ops.push(ledger.settle(job.namespaceId, job.jobId, c.charged));
      const earning = (c.charged * this.deps.nodeSharePercent) / 100n;
      if (earning > 0n && c.lease.nodeAddress)
        ops.push(ledger.earning(c.lease.nodeAddress, job.jobId, earning));
    } else ops.push(ledger.void(job.namespaceId, job.jobId));
    const stored = {
      ...result,
      record: {
        apiKeyId: job.apiKeyId ?? null,
        priority: job.priority ?? DEFAULT_PRIORITY_CLASS,
        assignedAt: timing.assignedAt?.toISOString() ?? null,
        executionMs: Math.round(timing.executionMs),
      },
    };
    const committed = await this.deps.commits.finish({
      ops,
      terminal: {
        id: job.jobId,
        namespaceId: job.namespaceId,
        createdAt: job.createdAt,
        status: result.status,
        cost: charges ? c.charged : 0n,
        attempts,
        result: stored,
        ...(c.status === 'succeeded'
          ? {
              tokensIn: c.result.tokensIn,
              tokensOut: c.result.tokensOut,
              latencyMs: Math.round(c.executionMs),
              node: c.lease.nodeAddress || null,
            }
          : { node: c.nodeAddress ?? null }),
      },
    });
    if (!committed.closed) return { closed: false, by: committed.by };
    this.deps.metrics?.jobsFinished.inc({ status: result.status });
    this.deps.metrics?.jobLatency.observe((Date.now() - job.createdAt.getTime()) / 1000);
    // Answer the waiters (in process at once; other processes through Redis). The row is the truth already.
    await this.deps.results
      ?.put(result)
      .catch((err: unknown) => this.log.warn({ err, jobId: job.jobId }, 'result not stored in Redis'));
    // One event per job: the finish carries the submission (input, key, priority) and the routing history, so
    // the recorder writes the job document from it alone. It also stands for job.completed (no separate
    // lifecycle message per job); a lost one is re-emitted from the result row (the outbox, jobs.recovery.ts).
    const submission = {
      at: job.createdAt.toISOString(),
      apiKeyId: job.apiKeyId ?? null,
      priority: job.priority ?? DEFAULT_PRIORITY_CLASS,
      request: job.request,
      failures: job.failures,
    };
    void this.emit([finishedEvent(result, timing, submission)]).then(
      (ok) => ok && this.deps.commits.mark({ kind: 'recorded', id: job.jobId }),
    );
    return { closed: true, status: result.status };
  }

  /** Publishes record events; resolves true once the record stream confirmed them (never rejects). */
  async emit(events: Parameters<JobRecordSink['publish']>[0]): Promise<boolean> {
    if (!this.deps.records) return false;
    try {
      await this.deps.records.publish(events);
      return true;
    } catch (err) {
      this.log.warn({ err }, 'record events not published');
      return false;
    }
  }
}
