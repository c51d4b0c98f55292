// Select-and-lease over the cells of an environment, lease completion with fencing, failure penalties.
import { randomInt } from 'node:crypto';
import { isAddress, isEnvironment } from '../../config/vocabulary.js';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import { liveSuffix } from '../../stores/redis/keys.js';
import type { LiveStore, Lease } from './live.store.js';
import type { NodeAdminService } from './node-admin.service.js';
import type { Observation } from './reputation.js';
import type { ReputationService } from './reputation.service.js';
import { cellOrder, modelName, modelVersion, regionName, type JobRequirements } from './node-status.js';

export interface CooldownPolicy {
  /** Penalty at which a failing node is paused. */
  penaltyThreshold: number;
  cooldownMs: number;
}

export class MatchmakingService {
  private readonly log: Logger;

  constructor(
    private readonly deps: {
      live: LiveStore;
      admin: NodeAdminService;
      reputation?: ReputationService;
      cooldown: CooldownPolicy;
      log: Logger;
    },
  ) {
    this.log = deps.log.child({ component: 'matchmaking' });
  }

  /**
   * Picks the best eligible node and leases it (atomic per cell). Returns undefined when no node can
   * take the job now. A job that already holds a lease gets that lease back (idempotent for repeated
   * calls; the dispatcher must not run two selections of one job at the same time across cells).
   */
  async selectAndLease(req: JobRequirements): Promise<Lease | undefined> {
    validate(req);
    const { live } = this.deps;
    // With one cell the script itself returns a held lease; with several, the lease may be in any.
    if (live.opts.cells > 1) {
      const held = await live.findLease(req.environment, req.jobId);
      if (held) return held;
    }
    const bases = cellOrder(req.jobId, live.opts.cells).map((c) =>
      live.keys.liveCellBase(req.environment, c),
    );
    // One cell: one call. Several cells with a region preference: the region in every cell first,
    // then every region, so a near node in a later cell beats a far one in an earlier cell.
    const modes: Array<'prefer' | 'only' | 'any'> =
      bases.length === 1 ? ['prefer'] : req.region ? ['only', 'any'] : ['any'];
    for (const mode of modes) {
      for (const base of await this.orderCells(bases, req, mode)) {
        const lease = await live.selectInCell(base, req, mode);
        if (lease) return lease;
      }
    }
    return undefined;
  }

  /**
   * Leases a node for a blind copy of a job (a spot check): any usable node serving the model outside
   * `excludeNodes` (shadow-banned nodes included, preferred with `preferBanned`), chosen at random; no Subcloud or
   * region preference (the copy only has to run somewhere independent). Undefined when none is free.
   */
  async leaseForCheck(req: {
    jobId: string;
    environment: JobRequirements['environment'];
    model: string;
    excludeNodes: string[];
    preferBanned: boolean;
  }): Promise<Lease | undefined> {
    validate(req);
    const { live } = this.deps;
    const start = randomInt(0, 1 << 30);
    const cells = cellOrder(req.jobId, live.opts.cells);
    // Preferred: a shadow-banned node in any cell first, then any usable node.
    for (const bannedOnly of req.preferBanned ? [true, false] : [false]) {
      for (const c of cells) {
        const base = live.keys.liveCellBase(req.environment, c);
        const lease = await live.selectCheckInCell(base, req, start, bannedOnly);
        if (lease) return lease;
      }
    }
    return undefined;
  }

  /** Adds a spot check's comparison to a node's measured reputation (in memory, flushed in batches). */
  observe(environment: JobRequirements['environment'], nodeAddress: string, o: Observation): void {
    this.deps.reputation?.observe(environment, nodeAddress, o);
  }

  /** Whether a node is still on probation (its first attempts): its jobs are spot-checked more often. */
  async onProbation(nodeAddress: string): Promise<boolean> {
    return (await this.deps.reputation?.view(nodeAddress))?.probation ?? false;
  }

  /** Cells by the best score of the pool searched (a heuristic: the top node may fail other filters). */
  private async orderCells(
    bases: string[],
    req: JobRequirements,
    mode: 'prefer' | 'only' | 'any',
  ): Promise<string[]> {
    if (bases.length === 1) return bases;
    const suffix = req.subcloudId
      ? liveSuffix.readyInSubcloud(req.model, req.subcloudId)
      : mode === 'only' && req.region
        ? liveSuffix.readyInRegion(req.model, req.region)
        : liveSuffix.ready(req.model);
    const scores = await this.deps.live.topScores(bases, suffix);
    return bases
      .map((b, i) => ({ b, s: scores[i]!, i }))
      .filter((x) => x.s > Number.NEGATIVE_INFINITY)
      .sort((x, y) => y.s - x.s || x.i - y.i)
      .map((x) => x.b);
  }

  /** The lease a job holds now, if any (whether a node runs it: a cancel stops it there). */
  findLease(environment: Lease['environment'], jobId: string): Promise<Lease | undefined> {
    return this.deps.live.findLease(environment, jobId);
  }

  /**
   * Ends a lease; a stale fencing token or an expired lease is refused (the job went elsewhere). `observed`:
   * what the network saw of the attempt, for the node's measured reputation (in memory here, flushed in batches);
   * only the lease holder's own outcome is recorded.
   */
  async complete(
    lease: Omit<Lease, 'expiresAtMs'>,
    outcome: 'ok' | 'failed',
    observed?: Observation,
  ): Promise<{ penalty: number }> {
    const r = await this.deps.live.release(lease, outcome);
    if (observed && r.kind === 'ok')
      this.deps.reputation?.observe(lease.environment, lease.nodeAddress, observed);
    if (r.kind === 'stale')
      throw new AppError('lease_stale', `lease of job ${lease.jobId} has a newer fencing token`, {
        jobId: lease.jobId,
      });
    if (r.kind === 'no_lease')
      throw new AppError('lease_not_found', `job ${lease.jobId} holds no lease (expired or released)`, {
        jobId: lease.jobId,
      });
    if (outcome === 'failed' && r.penalty >= this.deps.cooldown.penaltyThreshold) {
      // Repeated failures: a cooldown pause, persisted like an admin flag so it survives a flush.
      await this.deps.admin.setFlag({
        nodeAddress: lease.nodeAddress,
        flag: 'pause',
        setBy: 'system:penalty',
        reason: `penalty ${r.penalty} after failures`,
        expiresAt: new Date(Date.now() + this.deps.cooldown.cooldownMs),
      });
      this.log.info({ nodeId: lease.nodeAddress, penalty: r.penalty }, 'node cooled down after failures');
    }
    return { penalty: r.penalty };
  }
}

function validate(req: JobRequirements): void {
  const bad = (what: string) => new AppError('invalid_request', `job requirements: ${what}`);
  if (!req.jobId || req.jobId.length > 128 || /[,|]/.test(req.jobId)) throw bad('jobId');
  if (!isEnvironment(req.environment)) throw bad('environment');
  if (!modelName.safeParse(req.model).success) throw bad('model');
  if (req.version !== undefined && !modelVersion.safeParse(req.version).success) throw bad('version');
  if (req.region !== undefined && !regionName.safeParse(req.region).success) throw bad('region');
  if (req.subcloudId !== undefined && !/^[0-9a-f-]{36}$/.test(req.subcloudId)) throw bad('subcloudId');
  if (req.minGpuMemoryMb !== undefined && !(req.minGpuMemoryMb >= 0)) throw bad('minGpuMemoryMb');
  if ((req.excludeNodes ?? []).some((a) => !isAddress(a))) throw bad('excludeNodes');
}
