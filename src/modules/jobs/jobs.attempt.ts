// One attempt of a job: lease a node (waiting for capacity, or waiting out an earlier delivery of the same
// job), deliver it, and report a typed outcome with a cause code. It never touches PostgreSQL: what it needs
// travels in the job message, and the outcome is committed by JobsService.close.
import { isAppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import { classifyStoreError } from '../../stores/store-errors.js';
import { observationOf, type Lease, type MatchmakingService, type Observation } from '../nodes/index.js';
import type { AttemptCause, JobMessage } from '../routing/index.js';
import type { NodeExecutor, NodeResult } from './job.js';
import { withPinnedSeed } from './qc-compare.js';
import { boundUsage } from './usage-bound.js';

/** An executor may throw this to say why a delivery failed; any other error counts as the node's. */
export class DeliveryError extends Error {
  constructor(
    readonly code: AttemptCause | 'duplicate_delivery',
    message: string,
  ) {
    super(message);
  }
}

/**
 * The cause of a failed delivery. Typed errors carry their own; the node gateway's plain errors are mapped
 * here, at the executor boundary, once (the gateway can adopt DeliveryError and make this table moot).
 */
export function causeOf(err: unknown): AttemptCause | 'duplicate_delivery' {
  if (err instanceof DeliveryError) return err.code;
  // A store failing under the delivery (e.g. Redis unreachable while relaying or looking up the gateway
  // owner, ioredis's MaxRetriesPerRequestError) is ours, not the node's: found by the fault suite.
  if (isAppError(err, 'store_unavailable') || classifyStoreError(err) !== undefined) return 'store_error';
  const m = err instanceof Error ? err.message : String(err);
  const table: Array<[RegExp, AttemptCause | 'duplicate_delivery']> = [
    [/already delivered/, 'duplicate_delivery'],
    [/timed out|aborted/, 'node_timeout'],
    [/node gateway (is not running|stopped)/, 'backbone_shutdown'],
    [/not connected to any gateway|gateway \S+ is unreachable|relay answer/, 'backbone_unreachable'],
    [/disconnected|is not connected|frame not sent/, 'node_disconnect'],
    [/jobs in flight|socket is congested/, 'no_capacity'],
  ];
  for (const [re, cause] of table) if (re.test(m)) return cause;
  return 'node_error';
}

export function isNodeCause(cause: AttemptCause): boolean {
  return cause === 'node_error' || cause === 'node_timeout' || cause === 'node_disconnect';
}

export type AttemptOutcome =
  | { kind: 'ran'; lease: Lease; result: NodeResult; assignedAt: Date; executionMs: number }
  | { kind: 'failed'; cause: AttemptCause; reason: string; nodeAddress?: string; assignedAt?: Date }
  /** Another delivery of this job owns it (it ran, or still runs, to its own outcome): drop this copy. */
  | { kind: 'duplicate' }
  /** The process stops before any node took the job: give the delivery back unspent. */
  | { kind: 'handback' };

/** Process-wide: dispatches waiting for a free node, woken when this process releases a lease. */
export class CapacityWaiters {
  private readonly waiters = new Set<() => void>();
  stopping = false;

  wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const waiters = this.waiters;
      function done() {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      this.waiters.add(done);
    });
  }

  wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

export interface AttemptDeps {
  matchmaking: MatchmakingService;
  executor: NodeExecutor;
  capacity: CapacityWaiters;
  jobTimeoutMs: number;
  capacityWaitMs: number;
  /** How many dispatches of this job id run in this process (a duplicated message makes two). */
  activeHere: (jobId: string) => number;
  log: Logger;
}

export class Attempt {
  constructor(
    private readonly deps: AttemptDeps,
    readonly job: JobMessage,
  ) {}

  async run(): Promise<AttemptOutcome> {
    const lease = await this.lease();
    if (lease === 'duplicate') return { kind: 'duplicate' };
    // Stopping before any node took the job (waiting for capacity, or for another delivery's lease): the
    // delivery is handed back to the broker unspent, for another process.
    if (lease === 'stopping') return { kind: 'handback' };
    if (!lease) return { kind: 'failed', cause: 'no_capacity', reason: 'no eligible node' };
    const assignedAt = new Date();
    const started = performance.now();
    let duplicateWaited = false;
    for (;;) {
      try {
        const bounded = boundUsage(this.job.request, await this.deliver(lease));
        const executionMs = performance.now() - started;
        // An output the request could not have produced is refused like a node error (penalized, retried).
        if (!bounded.ok)
          throw new DeliveryError('node_error', `node ${lease.nodeAddress}: ${bounded.reason}`);
        const violation = bounded.violation ?? bounded.result.violation;
        if (violation)
          this.deps.log.warn(
            { jobId: this.job.jobId, nodeId: lease.nodeAddress, violation },
            'node usage over its bound: billed at the bound, node penalized',
          );
        // Only the node that still holds the lease (fencing token) may complete the job; a node that broke a
        // rule gets a failure's penalty on its standing, and an invalid result in its reputation, although its
        // (bounded) result counts.
        const observed = observationOf({
          result: bounded.result,
          latencyMs: executionMs,
          ...(this.job.request ? { request: this.job.request } : {}),
        });
        await this.release(
          lease,
          violation ? 'failed' : 'ok',
          violation && observed?.kind === 'ok' ? { ...observed, valid: false } : observed,
        );
        const result = violation ? { ...bounded.result, violation } : bounded.result;
        return { kind: 'ran', lease, result, assignedAt, executionMs };
      } catch (err) {
        const cause = causeOf(err);
        const reason = err instanceof Error ? err.message : String(err);
        if (cause === 'duplicate_delivery' && !duplicateWaited && !this.deps.capacity.stopping) {
          // The node still runs an earlier delivery of this job (its dispatcher lost its lease or crashed): that
          // delivery ends by its deadline at the latest. Wait it out on our lease, then deliver once more —
          // never hand the job to another node while this one runs it, and never blame the node for it.
          duplicateWaited = true;
          await this.deps.capacity.wait(
            Math.min(this.deps.jobTimeoutMs, Math.max(0, lease.expiresAtMs - Date.now() - 1000)),
          );
          continue;
        }
        let code: AttemptCause = cause === 'duplicate_delivery' ? 'no_capacity' : cause;
        // Our own stop closes the node sockets and gateways under running deliveries: not the node's fault.
        if (this.deps.capacity.stopping && (code === 'node_disconnect' || code === 'backbone_unreachable'))
          code = 'backbone_shutdown';
        // Only the node's own failures penalize it; ours leave its standing as it was.
        await this.release(lease, isNodeCause(code) ? 'failed' : 'ok', observationOf({ cause: code }));
        this.deps.log.info(
          { err, cause: code, jobId: this.job.jobId, nodeId: lease.nodeAddress },
          'attempt failed',
        );
        return { kind: 'failed', cause: code, reason, nodeAddress: lease.nodeAddress, assignedAt };
      }
    }
  }

  /** Gives the node back after an unexpected error (nothing of the attempt was committed). */
  async abandon(lease: Lease): Promise<void> {
    await this.release(lease, 'ok');
  }

  private async release(lease: Lease, outcome: 'ok' | 'failed', observed?: Observation): Promise<void> {
    try {
      await this.deps.matchmaking.complete(lease, outcome, observed);
    } catch (err) {
      // Expired or re-taken (a stale fencing token): the job's lease is no longer ours to end.
      this.deps.log.warn({ err, jobId: lease.jobId }, 'lease already gone');
    } finally {
      this.deps.capacity.wake();
    }
  }

  private select(): Promise<Lease | undefined> {
    const job = this.job;
    return this.deps.matchmaking.selectAndLease({
      jobId: job.jobId,
      environment: job.environment,
      model: job.model,
      excludeNodes: job.excludedNodeIds,
      ...(job.subcloud ? { subcloudId: job.subcloud } : {}),
    });
  }

  /**
   * Select-and-lease, waiting up to capacityWaitMs while every eligible node is busy: a full network is
   * backpressure (the delivery stays unacked), not a failed attempt. A lease already held by this job belongs
   * to an earlier delivery: a copy running here is dropped; otherwise it is waited out — released before its
   * expiry means that delivery reached its outcome (drop this copy), expired means its dispatcher died (take
   * a fresh lease and run).
   */
  private async lease(): Promise<Lease | 'duplicate' | 'stopping' | undefined> {
    const deadline = Date.now() + this.deps.capacityWaitMs;
    let pollMs = 5;
    for (;;) {
      // Checked before each select: a node freed by the stop's drain must not be taken by a waiting copy.
      if (this.deps.capacity.stopping) return 'stopping';
      const lease = await this.select();
      if (lease?.held) {
        if (this.deps.activeHere(this.job.jobId) > 1) return 'duplicate';
        return this.waitOut(lease);
      }
      const left = deadline - Date.now();
      if (lease || left <= 0) return lease;
      await this.deps.capacity.wait(Math.min(pollMs, left));
      pollMs = Math.min(pollMs * 2, 50);
    }
  }

  private async waitOut(held: Lease): Promise<Lease | 'duplicate' | 'stopping' | undefined> {
    this.deps.log.info(
      { jobId: held.jobId, nodeId: held.nodeAddress },
      'job lease held by another delivery: waiting it out',
    );
    for (;;) {
      // Stopping: this copy may be the only one left (its first dispatcher died), so it is never dropped; it
      // fails with a cause of ours and goes back through a retry (the node is not blamed).
      if (this.deps.capacity.stopping) return 'stopping';
      await this.deps.capacity.wait(Math.min(200, Math.max(1, held.expiresAtMs - Date.now())));
      const now = await this.select();
      if (now?.held && now.fencingToken === held.fencingToken) continue;
      if (Date.now() < held.expiresAtMs && !now?.held) {
        // Released before its expiry: the earlier delivery reached its outcome; this copy has nothing to do.
        if (now) await this.release(now, 'ok');
        return 'duplicate';
      }
      if (now?.held) return this.waitOut(now); // yet another delivery took it meanwhile
      return now;
    }
  }

  private async deliver(lease: Lease): Promise<NodeResult> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.deps.jobTimeoutMs);
    try {
      return await Promise.race([
        // Every text job is delivered with its pinned seed, so a checked job and its blind copy look alike.
        this.deps.executor.run(lease, withPinnedSeed(this.job), ac.signal),
        new Promise<never>((_, reject) =>
          // A backstop for an executor that ignores the signal: one that rejects on abort names its own cause
          // (a relay that lost its answer to a Redis drop is ours, not the node's), so it is given a turn first.
          ac.signal.addEventListener(
            'abort',
            () =>
              setImmediate(() =>
                reject(new DeliveryError('node_timeout', `node ${lease.nodeAddress} timed out`)),
              ),
            { once: true },
          ),
        ),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}
