// Presence: heartbeat ingestion (hydrated from PostgreSQL when a node has no live record), the live
// sweep (offline detection, lease expiry, cooldown ends) and node events.
import type { Environment } from '../../config/vocabulary.js';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { LiveStore, HeartbeatReply } from './live.store.js';
import { NodesRepository } from './nodes.repository.js';
import { PRIOR_SCORE } from './reputation.js';
import { encodeFlags, heartbeatSchema, nodeFlags, type Heartbeat, type NodeFlag } from './node-status.js';

export type LiveEvent =
  | { type: 'node.online'; environment: Environment; address: string }
  | {
      type: 'node.offline';
      environment: Environment;
      address: string;
      lastSeenMs: number;
      detectedAtMs: number;
    }
  | {
      type: 'lease.expired';
      environment: Environment;
      jobId: string;
      nodeAddress: string;
      fencingToken: string;
    }
  | { type: 'flag.lifted'; environment: Environment; address: string; flag: NodeFlag };

export type IngestReply = HeartbeatReply | { kind: 'refused'; error: AppError };

export type LiveEventListener = (event: LiveEvent) => void;

export interface SweepTotals {
  offline: number;
  expiredLeases: number;
  liftedFlags: number;
}

export interface NodeView {
  address: string;
  environment: Environment;
  online: boolean;
  /** Static status as last reported, with the live fields (quality and latency only via the score). */
  status?: Omit<Heartbeat, 'quality' | 'latencyMs'>;
  capacity?: number;
  leases?: number;
  /** Flags the viewer may see: an operator never sees shadow_ban. */
  flags: NodeFlag[];
}

const sweepBatch = 500;

export class PresenceService {
  private readonly repo = new NodesRepository();
  private readonly listeners = new Set<LiveEventListener>();
  private readonly log: Logger;
  /** The last accepted heartbeat of every node heard here: replayed when Redis loses the live state. */
  private readonly recent = new Map<string, Heartbeat>();

  constructor(private readonly deps: { pool: Pool; live: LiveStore; log: Logger; heartbeatTtlMs?: number }) {
    this.log = deps.log.child({ component: 'presence' });
  }

  /** Adds a listener for node events (also published on RedisKeys.liveEventsChannel()). */
  onEvent(listener: LiveEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Ingests one heartbeat; throws when it is refused (invalid, unregistered node, wrong environment). */
  async ingest(input: unknown): Promise<HeartbeatReply> {
    const r = (await this.ingestMany([input]))[0]!;
    if (r.kind === 'refused') throw r.error;
    return r;
  }

  /**
   * Ingests heartbeats (pipelined). Nodes without a live record (new, returning, or after a flush) are
   * hydrated from PostgreSQL in one query: registry check, flags in force, Subcloud membership.
   */
  async ingestMany(inputs: unknown[]): Promise<IngestReply[]> {
    const parsed = inputs.map((i) => heartbeatSchema.safeParse(i));
    const hbs = parsed.map((p) => (p.success ? p.data : undefined));
    const valid = hbs.flatMap((hb, i) => (hb ? [i] : []));
    const stored = await this.deps.live.heartbeatMany(valid.map((i) => ({ hb: hbs[i]! })));
    const replies: IngestReply[] = parsed.map((p) =>
      p.success
        ? { kind: 'hydrate' } // placeholder, replaced below
        : {
            kind: 'refused',
            error: new AppError('invalid_request', `heartbeat: ${p.error.issues[0]?.message}`),
          },
    );
    valid.forEach((i, k) => (replies[i] = stored[k]!));
    const missing = hbs.filter((hb, i): hb is Heartbeat => !!hb && replies[i]!.kind === 'hydrate');
    if (missing.length > 0) {
      const truth = await this.repo.loadTruth(this.deps.pool, [...new Set(missing.map((h) => h.address))]);
      const now = new Date();
      const hydrate: number[] = [];
      hbs.forEach((hb, i) => {
        if (!hb || replies[i]!.kind !== 'hydrate') return;
        const t = truth.get(hb.address);
        if (!t || t.node.status === 'retired') {
          replies[i] = {
            kind: 'refused',
            error: new AppError('node_not_registered', `node ${hb.address} is not registered`),
          };
        } else if (t.node.environment !== hb.environment) {
          const error = new AppError(
            'invalid_request',
            `node ${hb.address} is registered on ${t.node.environment}`,
          );
          replies[i] = { kind: 'refused', error };
        } else hydrate.push(i);
      });
      const hydrated = await this.deps.live.heartbeatMany(
        hydrate.map((i) => {
          const t = truth.get(hbs[i]!.address)!;
          const hydration = {
            flags: encodeFlags(t.flags, now),
            subcloudIds: t.subcloudIds,
            reputation: t.reputation ?? { score: PRIOR_SCORE, probation: true },
          };
          return { hb: hbs[i]!, hydration };
        }),
      );
      hydrate.forEach((i, k) => (replies[i] = hydrated[k]!));
    }
    hbs.forEach((hb, i) => {
      if (hb && replies[i]!.kind === 'ok') this.recent.set(hb.address, hb);
    });
    const joined = hbs.filter((hb, i): hb is Heartbeat => {
      const r = replies[i]!;
      return !!hb && r.kind === 'ok' && r.joined;
    });
    if (joined.length > 0)
      await this.emit(
        joined.map((hb) => ({ type: 'node.online', environment: hb.environment, address: hb.address })),
      );
    return replies;
  }

  /**
   * After Redis lost the live state: re-ingests the last heartbeat of every node heard here that is still
   * within the heartbeat TTL (each is hydrated again from PostgreSQL: registry, flags, Subclouds), so the
   * catalog and the ready pools are back now rather than at the next heartbeat. Returns how many.
   */
  async replayRecent(nowMs = Date.now()): Promise<number> {
    const ttl = this.deps.heartbeatTtlMs ?? 30_000;
    const fresh: Heartbeat[] = [];
    for (const [address, hb] of this.recent) {
      if (nowMs - hb.timestampMs < ttl) fresh.push(hb);
      else this.recent.delete(address);
    }
    if (fresh.length === 0) return 0;
    const replies = await this.ingestMany(fresh);
    return replies.filter((r) => r.kind === 'ok').length;
  }

  /**
   * One sweep of every cell; emits offline, lease-expired and flag-lifted events. An aborted `signal` (the
   * task's lock lost: another process may be sweeping now) stops it before its next cell batch.
   */
  async sweep(signal?: AbortSignal): Promise<SweepTotals> {
    const totals: SweepTotals = { offline: 0, expiredLeases: 0, liftedFlags: 0 };
    for (const { environment, base } of this.deps.live.cellBases()) {
      // Bounded: a backlog larger than 20 batches waits for the next tick.
      for (let round = 0; round < 20; round += 1) {
        if (signal?.aborted) return totals;
        const r = await this.deps.live.sweepCell(environment, base, sweepBatch);
        const events: LiveEvent[] = [
          ...r.offline.map((o): LiveEvent => ({ type: 'node.offline', ...o, detectedAtMs: r.nowMs })),
          ...r.expired.map((l): LiveEvent => ({ type: 'lease.expired', ...l })),
          ...r.lifted.map((f): LiveEvent => ({ type: 'flag.lifted', ...f })),
        ];
        totals.offline += r.offline.length;
        totals.expiredLeases += r.expired.length;
        totals.liftedFlags += r.lifted.length;
        if (events.length > 0) await this.emit(events);
        if (r.offline.length < sweepBatch && r.expired.length < sweepBatch && r.lifted.length < sweepBatch)
          break;
      }
    }
    return totals;
  }

  /** What a viewer sees of a node: its operator's view hides a shadow ban (the node looks normal). */
  async viewNode(environment: Environment, address: string, viewer: 'operator' | 'admin'): Promise<NodeView> {
    const [rec, staticStatus] = await Promise.all([
      this.deps.live.readNode(environment, address),
      this.deps.live.readStatus(environment, address),
    ]);
    if (!rec.ts) return { address, environment, online: false, flags: [] };
    const now = Date.now();
    const flags = nodeFlags.filter((f) => {
      const v = rec[`f:${f}`];
      if (v === undefined) return false;
      const exp = Number(v);
      return (exp === 0 || exp > now) && (viewer === 'admin' || f !== 'shadow_ban');
    });
    return {
      address,
      environment,
      online: true,
      status: {
        ...(JSON.parse(staticStatus ?? '{}') as Omit<
          Heartbeat,
          'timestampMs' | 'capacity' | 'load' | 'health'
        >),
        address,
        timestampMs: Number(rec.ts),
        capacity: Number(rec.cap),
        load: Number(rec.load),
        health: rec.health as Heartbeat['health'],
      },
      capacity: Number(rec.cap),
      leases: Number(rec.leases),
      flags,
    };
  }

  private async emit(events: LiveEvent[]): Promise<void> {
    for (const e of events) {
      for (const l of this.listeners) {
        try {
          l(e);
        } catch (err) {
          this.log.error({ err, event: e.type }, 'event listener failed');
        }
      }
    }
    try {
      await this.deps.live.publish(this.deps.live.keys.liveEventsChannel(), events);
    } catch (err) {
      this.log.warn({ err }, 'publishing node events failed');
    }
  }
}
