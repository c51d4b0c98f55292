// Redis side of live node state: runs the live_* scripts on the right cell and maps their replies.
import { createHash } from 'node:crypto';
import { ENVIRONMENTS, type Environment } from '../../config/vocabulary.js';
import type { Redis } from '../../stores/redis/client.js';
import { RedisKeys, liveSuffix } from '../../stores/redis/keys.js';
import { getScript, runScript, type LuaReply } from '../../stores/redis/scripts.js';
import { ReleaseBatcher, type ReleaseReply } from './release-batcher.js';
import {
  baseScoreOf,
  cellOf,
  encodeActiveModels,
  gpuClassOf,
  type Heartbeat,
  type JobRequirements,
  type NodeFlag,
} from './node-status.js';
import { isProbationJob, PRIOR_SCORE } from './reputation.js';

export interface LiveOptions {
  cells: number;
  /** Share of jobs (percent) that go to nodes on probation when both kinds can take them. */
  probationSharePercent?: number;
  heartbeatTtlMs: number;
  leaseTtlMs: number;
  scanLimit: number;
  failurePenalty: number;
  successRecovery: number;
}

export interface Hydration {
  /** `flag=<expiry ms|0>,...` */
  flags: string;
  subcloudIds: string[];
  /** The node's measured reputation as stored in PostgreSQL (the prior when it has none). */
  reputation: { score: number; probation: boolean };
}

export type HeartbeatReply =
  | { kind: 'hydrate' }
  | { kind: 'stale'; storedTimestampMs: number }
  | { kind: 'ok'; joined: boolean; eligible: boolean };

export interface Lease {
  jobId: string;
  environment: Environment;
  nodeAddress: string;
  /** Checked by the completion path: a stale token (lease expired and re-taken) is refused. */
  fencingToken: string;
  expiresAtMs: number;
  /** True when the job already held this lease (another dispatch of it took it): not this caller's to release. */
  held?: boolean;
}

export interface SweepResult {
  offline: Array<{ environment: Environment; address: string; lastSeenMs: number }>;
  expired: Array<Omit<Lease, 'expiresAtMs'>>;
  lifted: Array<{ environment: Environment; address: string; flag: NodeFlag }>;
  nowMs: number;
}

export type { ReleaseReply } from './release-batcher.js';

/** The rarely changing part of a heartbeat, and a short digest of it. */
export function staticStatusOf(hb: Heartbeat): { json: string; digest: string } {
  const json = JSON.stringify({
    version: hb.version,
    environment: hb.environment,
    region: hb.region,
    software: hb.software,
    gpu: hb.gpu,
    configDigest: hb.configDigest,
    models: hb.models,
  });
  return { json, digest: createHash('sha1').update(json).digest('base64url').slice(0, 16) };
}

/** Heartbeats per script call (one cell); large enough to amortize the call, small enough to stay short. */
const heartbeatBatch = 64;

/** One heartbeat as the script's TAB-joined argument (field order in live_heartbeat.lua). */
function packHeartbeat(
  hb: Heartbeat,
  hydration: Hydration | undefined,
  statusJson: string,
  digest: string,
): string {
  return [
    hb.address,
    hb.timestampMs,
    baseScoreOf(hb),
    hb.capacity,
    hb.load,
    hb.region ?? '',
    gpuClassOf(hb.gpu.memoryMb),
    hb.gpu.memoryMb,
    hb.gpu.count,
    encodeActiveModels(hb.models),
    hb.health,
    hydration ? '1' : '0',
    hydration?.flags ?? '',
    hydration?.subcloudIds.join(',') ?? '',
    hydration?.reputation.score ?? PRIOR_SCORE,
    (hydration?.reputation.probation ?? true) ? '1' : '0',
    digest,
    statusJson,
  ].join('\t');
}

const asArray = (r: LuaReply): LuaReply[] => (Array.isArray(r) ? r : []);
const str = (r: LuaReply | undefined): string => (r === null || r === undefined ? '' : String(r));

export class LiveStore {
  readonly keys: RedisKeys;
  /** Address → digest of the static status this process last stored (bounded; a miss only costs bytes). */
  private readonly sentStatus = new Map<string, string>();
  private readonly releases: ReleaseBatcher;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    readonly opts: LiveOptions,
  ) {
    this.keys = new RedisKeys(prefix);
    this.releases = new ReleaseBatcher(redis);
  }

  baseOf(environment: Environment, nodeAddress: string): string {
    return this.keys.liveCellBase(environment, cellOf(nodeAddress, this.opts.cells));
  }

  cellBases(environment?: Environment): Array<{ environment: Environment; base: string }> {
    const envs = environment ? [environment] : ENVIRONMENTS;
    return envs.flatMap((env) =>
      Array.from({ length: this.opts.cells }, (_, c) => ({
        environment: env,
        base: this.keys.liveCellBase(env, c),
      })),
    );
  }

  async heartbeat(hb: Heartbeat, hydration?: Hydration): Promise<HeartbeatReply> {
    return (await this.heartbeatMany([{ hb, hydration }]))[0]!;
  }

  /**
   * Ingests heartbeats in one script call per cell and chunk (HEARTBEAT_BATCH). The static part of a
   * status (versions, GPU, models, config) rarely changes: it is sent only when this process has not
   * sent that digest for that node; the script asks for it when its copy differs.
   */
  async heartbeatMany(items: Array<{ hb: Heartbeat; hydration?: Hydration }>): Promise<HeartbeatReply[]> {
    const prepared = items.map(({ hb, hydration }) => {
      const s = staticStatusOf(hb);
      return { hb, hydration, ...s, base: this.baseOf(hb.environment, hb.address) };
    });
    const replies = new Array<string>(items.length);
    const send = async (indexes: number[], forceStatus: boolean) => {
      const byBase = new Map<string, number[]>();
      for (const i of indexes) {
        const list = byBase.get(prepared[i]!.base) ?? [];
        list.push(i);
        byBase.set(prepared[i]!.base, list);
      }
      const calls: Promise<void>[] = [];
      for (const [base, list] of byBase) {
        for (let c = 0; c < list.length; c += heartbeatBatch) {
          const chunk = list.slice(c, c + heartbeatBatch);
          const args: Array<string | number> = [this.opts.heartbeatTtlMs];
          for (const i of chunk) {
            const p = prepared[i]!;
            const known = !forceStatus && !p.hydration && this.sentStatus.get(p.hb.address) === p.digest;
            args.push(packHeartbeat(p.hb, p.hydration, known ? '' : p.json, p.digest));
          }
          calls.push(
            runScript(this.redis, getScript('live_heartbeat'), [base], args).then((r) => {
              asArray(r).forEach((reply, k) => (replies[chunk[k]!] = str(reply)));
            }),
          );
        }
      }
      await Promise.all(calls);
    };
    await send(
      items.map((_, i) => i),
      false,
    );
    const resend = replies.flatMap((r, i) => (r === 'T' ? [i] : []));
    if (resend.length > 0) await send(resend, true);
    if (this.sentStatus.size >= 1_000_000) this.sentStatus.clear();
    return replies.map((r, i): HeartbeatReply => {
      if (r === 'H') return { kind: 'hydrate' };
      if (r.startsWith('S')) return { kind: 'stale', storedTimestampMs: Number(r.slice(1)) };
      this.sentStatus.set(prepared[i]!.hb.address, prepared[i]!.digest);
      return { kind: 'ok', joined: r[1] === '1', eligible: r[2] === '1' };
    });
  }

  /** Tries one cell; undefined when it has no eligible node. */
  async selectInCell(
    base: string,
    req: JobRequirements,
    regionMode: 'prefer' | 'only' | 'any' = 'prefer',
  ): Promise<Lease | undefined> {
    const r = asArray(
      await runScript(
        this.redis,
        getScript('live_select_lease'),
        [base],
        [
          req.jobId,
          req.model,
          req.version ?? '',
          req.minGpuMemoryMb ?? 0,
          req.region ?? '',
          req.subcloudId ?? '',
          this.opts.leaseTtlMs,
          this.opts.heartbeatTtlMs,
          (req.excludeNodes ?? []).join(','),
          this.opts.scanLimit,
          regionMode,
          isProbationJob(req.jobId, this.opts.probationSharePercent ?? 0) ? '1' : '0',
        ],
      ),
    );
    if (r[0] !== 'OK' && r[0] !== 'HELD') return undefined;
    return {
      jobId: req.jobId,
      environment: req.environment,
      nodeAddress: str(r[1]),
      fencingToken: str(r[2]),
      expiresAtMs: Number(r[3]),
      ...(r[0] === 'HELD' ? { held: true } : {}),
    };
  }

  /**
   * Leases a node of one cell for a blind copy (live_select_check.lua): any usable node serving the model outside
   * `excludeNodes`, shadow-banned ones included (only those with `bannedOnly`); `start` spreads the choice.
   */
  async selectCheckInCell(
    base: string,
    req: { jobId: string; environment: Environment; model: string; excludeNodes: string[] },
    start: number,
    bannedOnly: boolean,
  ): Promise<Lease | undefined> {
    const r = asArray(
      await runScript(
        this.redis,
        getScript('live_select_check'),
        [base],
        [
          req.jobId,
          req.model,
          this.opts.leaseTtlMs,
          this.opts.heartbeatTtlMs,
          req.excludeNodes.join(','),
          start,
          bannedOnly ? '1' : '0',
        ],
      ),
    );
    if (r[0] !== 'OK') return undefined;
    const [, node, token, exp] = r;
    return {
      jobId: req.jobId,
      environment: req.environment,
      nodeAddress: str(node),
      fencingToken: str(token),
      expiresAtMs: Number(exp),
    };
  }

  /** Ends a lease (batched with releases arriving together: see ReleaseBatcher). */
  release(lease: Omit<Lease, 'expiresAtMs'>, outcome: 'ok' | 'failed'): Promise<ReleaseReply> {
    return this.releases.release(
      [this.baseOf(lease.environment, lease.nodeAddress)],
      [
        lease.jobId,
        lease.nodeAddress,
        lease.fencingToken,
        outcome,
        this.opts.failurePenalty,
        this.opts.successRecovery,
        this.opts.heartbeatTtlMs,
      ],
    );
  }

  /** Round trips release() made (one per batch); for tests and benchmarks. */
  get releaseBatches(): number {
    return this.releases.batches;
  }

  async sweepCell(environment: Environment, base: string, limit: number): Promise<SweepResult> {
    const r = asArray(
      await runScript(this.redis, getScript('live_sweep'), [base], [this.opts.heartbeatTtlMs, limit]),
    );
    const [offline, expired, lifted] = [asArray(r[0]!), asArray(r[1]!), asArray(r[2]!)];
    const out: SweepResult = { offline: [], expired: [], lifted: [], nowMs: Number(r[3]) };
    for (let i = 0; i < offline.length; i += 2)
      out.offline.push({ environment, address: str(offline[i]), lastSeenMs: Number(offline[i + 1]) });
    for (let i = 0; i < expired.length; i += 3)
      out.expired.push({
        environment,
        jobId: str(expired[i]),
        nodeAddress: str(expired[i + 1]),
        fencingToken: str(expired[i + 2]),
      });
    for (let i = 0; i < lifted.length; i += 2)
      out.lifted.push({ environment, address: str(lifted[i]), flag: str(lifted[i + 1]) as NodeFlag });
    return out;
  }

  /** The lease a job holds in any cell of its environment, if one. */
  async findLease(environment: Environment, jobId: string): Promise<Lease | undefined> {
    const found = await Promise.all(
      this.cellBases(environment).map(({ base }) =>
        this.redis.hmget(base + liveSuffix.lease(jobId), 'node', 'token', 'exp'),
      ),
    );
    const hit = found.find((f) => f[0] !== null);
    if (!hit) return undefined;
    return {
      jobId,
      environment,
      nodeAddress: hit[0]!,
      fencingToken: hit[1]!,
      expiresAtMs: Number(hit[2]),
      held: true,
    };
  }

  /**
   * Claims, refreshes or drops the liveness of gateway sessions held by `instanceId` (one script call per
   * cell). `forMs`: how long each claim stays in force from now (Redis time) unless refreshed. Returns, per
   * item, whether the claim was written (open/refresh) or dropped (close).
   */
  async claimSessions(
    op: 'open' | 'refresh' | 'close',
    instanceId: string,
    items: Array<{ environment: Environment; address: string; forMs?: number }>,
  ): Promise<boolean[]> {
    const byBase = new Map<string, number[]>();
    items.forEach((it, i) => {
      const base = this.baseOf(it.environment, it.address);
      byBase.set(base, [...(byBase.get(base) ?? []), i]);
    });
    const out = new Array<boolean>(items.length).fill(false);
    await Promise.all(
      [...byBase].map(async ([base, list]) => {
        const args: Array<string | number> = [op, instanceId, this.opts.heartbeatTtlMs];
        for (const i of list) {
          args.push(items[i]!.address);
          if (op !== 'close') args.push(Math.max(1, Math.round(items[i]!.forMs ?? 0)));
        }
        const r = asArray(await runScript(this.redis, getScript('live_session'), [base], args));
        list.forEach((i, k) => (out[i] = Number(r[k]) === 1));
      }),
    );
    return out;
  }

  /** Mirrors measured reputation scores into the live records (one script call per cell). */
  async mirrorReputation(
    items: Array<{ environment: Environment; address: string; score: number; probation: boolean }>,
  ): Promise<void> {
    const byBase = new Map<string, typeof items>();
    for (const it of items) {
      const base = this.baseOf(it.environment, it.address);
      byBase.set(base, [...(byBase.get(base) ?? []), it]);
    }
    await Promise.all(
      [...byBase].map(([base, list]) =>
        runScript(
          this.redis,
          getScript('live_reputation'),
          [base],
          [
            this.opts.heartbeatTtlMs,
            ...list.flatMap((it) => [it.address, it.score, it.probation ? '1' : '0']),
          ],
        ),
      ),
    );
  }

  /** Whether a gateway session claim of the node is in force (Redis time). */
  async sessionLive(environment: Environment, address: string): Promise<boolean> {
    const base = this.baseOf(environment, address);
    const [score, t] = await Promise.all([
      this.redis.zscore(base + liveSuffix.session, address),
      this.redis.time(),
    ]);
    return score !== null && Number(score) > Number(t[0]) * 1000 + Math.floor(Number(t[1]) / 1000);
  }

  /** Mirrors a flag already written to PostgreSQL; false when the node has no live record. */
  async mirrorFlag(
    environment: Environment,
    address: string,
    flag: NodeFlag,
    op: 'set' | 'clear',
    expiresAt: Date | null,
  ): Promise<boolean> {
    const r = asArray(
      await runScript(
        this.redis,
        getScript('live_flag'),
        [this.baseOf(environment, address)],
        [address, flag, op, expiresAt ? expiresAt.getTime() : 0, this.opts.heartbeatTtlMs],
      ),
    );
    return Number(r[1]) === 1;
  }

  async mirrorSubclouds(environment: Environment, address: string, subcloudIds: string[]): Promise<boolean> {
    const r = asArray(
      await runScript(
        this.redis,
        getScript('live_subclouds'),
        [this.baseOf(environment, address)],
        [address, subcloudIds.join(','), this.opts.heartbeatTtlMs],
      ),
    );
    return Number(r[1]) === 1;
  }

  /** The raw live record (empty object when offline). */
  async readNode(environment: Environment, address: string): Promise<Record<string, string>> {
    return this.redis.hgetall(this.baseOf(environment, address) + liveSuffix.node(address));
  }

  /** The static status JSON last stored for the node. */
  async readStatus(environment: Environment, address: string): Promise<string | null> {
    return this.redis.get(this.baseOf(environment, address) + liveSuffix.status(address));
  }

  /** Flags mirrored into the cell's live records, as `<address>|<flag>`. */
  async readFlagged(base: string): Promise<string[]> {
    return this.redis.smembers(base + liveSuffix.flagged);
  }

  async readPool(base: string, suffix: string): Promise<string[]> {
    return this.redis.zrange(base + suffix, 0, -1);
  }

  /** Per-cell counters for catalogs and status, summed by the caller. */
  async readCellCounters(base: string): Promise<{
    online: number;
    catalog: Record<string, string>;
    stats: Record<string, string>;
  }> {
    const [online, catalog, stats] = await Promise.all([
      this.redis.zcard(base + liveSuffix.seen),
      this.redis.hgetall(base + liveSuffix.catalog),
      this.redis.hgetall(base + liveSuffix.stats),
    ]);
    return { online, catalog, stats };
  }

  /** Best score in `suffix` of each cell (-Infinity when empty), for ordering cells. */
  async topScores(bases: string[], suffix: string): Promise<number[]> {
    return Promise.all(
      bases.map(async (b) => {
        const r = await this.redis.zrevrange(b + suffix, 0, 0, 'WITHSCORES');
        return r.length === 2 ? Number(r[1]) : Number.NEGATIVE_INFINITY;
      }),
    );
  }

  async readyCount(base: string, model: string): Promise<number> {
    return this.redis.zcard(base + liveSuffix.ready(model));
  }

  async publish(channel: string, message: unknown): Promise<void> {
    await this.redis.publish(channel, JSON.stringify(message));
  }
}
