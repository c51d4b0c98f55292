// Read-mostly views over live state, cached in Redis for LIVE_CACHE_TTL_MS: model catalog and
// availability per environment, Subcloud lists, network status metrics. The catalog (read by every job
// submit) is also held in process memory, so the hot path makes no Redis call for it.
import { ENVIRONMENTS, type Environment } from '../../config/vocabulary.js';
import { AppError } from '../../platform/errors.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { Redis } from '../../stores/redis/client.js';
import type { LiveStore } from './live.store.js';
import { NodesRepository, type Subcloud } from './nodes.repository.js';

export interface ModelAvailability {
  model: string;
  /** Online nodes per version. */
  versions: Record<string, number>;
  onlineNodes: number;
  /** Nodes with idle capacity in the public pools now. */
  idleNodes: number;
}

export interface NetworkStatus {
  environments: Record<Environment, { onlineNodes: number; gpus: number; models: number }>;
  /** Queue depths reported by the routing side (provided by the caller; empty when unknown). */
  queues: Record<string, number>;
  atMs: number;
}

/** The in-process copy of the catalog is refreshed from Redis after this long (at most the Redis TTL). */
const LOCAL_CATALOG_TTL_MS = 1_000;

interface LocalCatalog {
  value: ModelAvailability[];
  atMs: number;
  refreshing?: Promise<ModelAvailability[]>;
}

export class LiveCatalogService {
  private readonly repo = new NodesRepository();
  private readonly local = new Map<Environment, LocalCatalog>();
  /** Bumped by every invalidation. */
  private generation = 0;
  /** Until then a catalog miss may be a node not yet heard again after a Redis loss: retryable, not 404. */
  private recoveringUntilMs = 0;

  constructor(
    private readonly deps: {
      pool: Pool;
      redis: Redis;
      live: LiveStore;
      cacheTtlMs: number;
      /** How long after a Redis loss a miss answers catalog_recovering (a heartbeat interval and a margin). */
      recoveryWindowMs?: number;
      /** Checks now whether Redis lost its data (starting the rebuild); resolves when it is rebuilt. */
      lossCheck?: () => Promise<boolean>;
    },
  ) {}

  /**
   * Rebuilds the live catalog after a Redis loss: `replay` re-ingests what the connected nodes last
   * reported (hydrated from PostgreSQL), then the cached views computed meanwhile are dropped.
   */
  async rebuild(replay: () => Promise<number>): Promise<number> {
    this.recoveringUntilMs = Date.now() + (this.deps.recoveryWindowMs ?? 15_000);
    const n = await replay();
    // The process copies were computed from the lost state: drop them with the Redis ones.
    this.generation += 1;
    this.local.clear();
    const keys = this.deps.live.keys;
    await this.deps.redis.del(
      ...ENVIRONMENTS.flatMap((e) => [keys.catalogCache(e), keys.subcloudListCache(e)]),
      keys.statusCache(),
    );
    return n;
  }

  isRecovering(nowMs = Date.now()): boolean {
    return nowMs < this.recoveringUntilMs;
  }

  /**
   * The availability of `model`, or: `catalog_recovering` (503, retryable) while the catalog is rebuilt
   * after a Redis loss, `model_not_found` (404) otherwise. A miss first checks for a loss not yet noticed.
   */
  async requireServed(environment: Environment, model: string): Promise<ModelAvailability> {
    const find = (list: ModelAvailability[]) => list.find((m) => m.model === model && m.onlineNodes > 0);
    const served = find(await this.catalog(environment));
    if (served) return served;
    if (this.deps.lossCheck && (await this.deps.lossCheck().catch(() => false))) {
      const again = find(await this.computeCatalog(environment));
      if (again) return again;
    }
    if (this.isRecovering())
      throw new AppError(
        'catalog_recovering',
        `the live model catalog of ${environment} is being rebuilt after a live-state loss; retry shortly`,
        { headers: { 'retry-after': '1' } },
      );
    throw new AppError(
      'model_not_found',
      `the model '${model}' is not served by any online node of ${environment}; GET /v1/models lists the models`,
    );
  }

  /**
   * Models served by at least one online node of the environment, with availability. Served from process
   * memory; a copy older than min(1 s, LIVE_CACHE_TTL_MS) is refreshed in the background (one Redis read per
   * process per interval, however many jobs); a copy older than LIVE_CACHE_TTL_MS is waited for. What a process
   * shows lags live state by at most 2 × LIVE_CACHE_TTL_MS (the Redis copy, then the local one).
   */
  async catalog(environment: Environment): Promise<ModelAvailability[]> {
    const hit = this.local.get(environment);
    const age = hit ? Date.now() - hit.atMs : Infinity;
    // Older than the Redis TTL (e.g. after an idle spell): wait for a fresh one, so the bound holds.
    if (!hit || age >= this.deps.cacheTtlMs) return this.refreshCatalog(environment);
    if (age >= Math.min(LOCAL_CATALOG_TTL_MS, this.deps.cacheTtlMs) && !hit.refreshing)
      void this.refreshCatalog(environment).catch(() => undefined); // the old copy serves meanwhile
    return hit.value;
  }

  /** Drops this process's catalog copies and the Redis one (the next call recomputes from live state). */
  async invalidateCatalog(environment: Environment): Promise<void> {
    this.generation += 1;
    this.local.delete(environment);
    await this.deps.redis.del(this.deps.live.keys.catalogCache(environment));
  }

  private refreshCatalog(environment: Environment): Promise<ModelAvailability[]> {
    const entry = this.local.get(environment);
    if (entry?.refreshing) return entry.refreshing;
    const gen = this.generation;
    const p = this.cached(this.deps.live.keys.catalogCache(environment), () =>
      this.computeCatalog(environment),
    ).then(
      (value) => {
        // A read that started before an invalidation must not put the old catalog back.
        if (gen === this.generation) this.local.set(environment, { value, atMs: Date.now() });
        return value;
      },
      (err: unknown) => {
        if (this.local.get(environment)?.refreshing === p) delete this.local.get(environment)!.refreshing;
        throw err;
      },
    );
    if (entry) entry.refreshing = p;
    return p;
  }

  async subclouds(environment: Environment): Promise<Subcloud[]> {
    return this.cached(this.deps.live.keys.subcloudListCache(environment), () =>
      this.repo.listSubclouds(this.deps.pool, environment),
    );
  }

  /** Drops the cached Subcloud list after a change (other processes see it within the TTL). */
  async invalidateSubclouds(environment: Environment): Promise<void> {
    await this.deps.redis.del(this.deps.live.keys.subcloudListCache(environment));
  }

  async status(
    queueDepths: () => Promise<Record<string, number>> = async () => ({}),
  ): Promise<NetworkStatus> {
    return this.cached(this.deps.live.keys.statusCache(), async () => {
      const out = {} as NetworkStatus['environments'];
      for (const env of ENVIRONMENTS) {
        let onlineNodes = 0;
        let gpus = 0;
        const models = new Set<string>();
        for (const { base } of this.deps.live.cellBases(env)) {
          const c = await this.deps.live.readCellCounters(base);
          onlineNodes += c.online;
          gpus += Number(c.stats.gpus ?? 0);
          for (const [mv, n] of Object.entries(c.catalog)) if (Number(n) > 0) models.add(mv.split('=')[0]!);
        }
        out[env] = { onlineNodes, gpus, models: models.size };
      }
      return { environments: out, queues: await queueDepths(), atMs: Date.now() };
    });
  }

  private async computeCatalog(environment: Environment): Promise<ModelAvailability[]> {
    const byModel = new Map<string, ModelAvailability>();
    const cells = this.deps.live.cellBases(environment);
    for (const { base } of cells) {
      const c = await this.deps.live.readCellCounters(base);
      for (const [mv, n] of Object.entries(c.catalog)) {
        const count = Number(n);
        if (count <= 0) continue;
        const eq = mv.lastIndexOf('=');
        const model = mv.slice(0, eq);
        const m = byModel.get(model) ?? { model, versions: {}, onlineNodes: 0, idleNodes: 0 };
        m.versions[mv.slice(eq + 1)] = (m.versions[mv.slice(eq + 1)] ?? 0) + count;
        m.onlineNodes += count;
        byModel.set(model, m);
      }
    }
    for (const m of byModel.values())
      for (const { base } of cells) m.idleNodes += await this.deps.live.readyCount(base, m.model);
    return [...byModel.values()].sort((a, b) => a.model.localeCompare(b.model));
  }

  private async cached<T>(key: string, compute: () => Promise<T>): Promise<T> {
    const hit = await this.deps.redis.get(key);
    if (hit !== null) return JSON.parse(hit) as T;
    const value = await compute();
    await this.deps.redis.set(key, JSON.stringify(value), 'PX', this.deps.cacheTtlMs);
    return value;
  }
}
