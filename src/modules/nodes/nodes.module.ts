// Builds the nodes module from config and stores, and its recurring task (the live sweep).
import type { Config } from '../../config/config.js';
import type { Logger } from '../../platform/logger.js';
import type { RecurringTask } from '../../platform/tasks.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { Redis } from '../../stores/redis/client.js';
import { RedisLossWatcher } from '../../stores/redis/loss-watcher.js';
import { LiveStore } from './live.store.js';
import { MatchmakingService } from './matchmaking.service.js';
import { NodeAdminService } from './node-admin.service.js';
import { PresenceService } from './presence.service.js';
import { LiveCatalogService } from './live-catalog.service.js';
import { ReputationService } from './reputation.service.js';

/** The platform's recurring task (kept under this name for the callers of the nodes module). */
export type RecurringTaskLike = RecurringTask;

export interface NodesModule {
  live: LiveStore;
  presence: PresenceService;
  matchmaking: MatchmakingService;
  admin: NodeAdminService;
  catalog: LiveCatalogService;
  /** Measured reputation: observations from the job path, flushed and mirrored in batches; stop() flushes. */
  reputation: ReputationService;
  /**
   * Notices a Redis data loss (then rebuilds the catalog from the heartbeats heard here and PostgreSQL) and
   * reconnections; start() it in a serving process. Others (the node gateway) add their own handlers.
   */
  liveWatch: RedisLossWatcher;
  /** For the task runner: offline detection, lease expiry and cooldown ends, every LIVE_SWEEP_INTERVAL_MS. */
  sweepTask: RecurringTaskLike;
  /** Re-mirrors flags in force from PostgreSQL every LIVE_FLAG_RECONCILE_INTERVAL_MS. */
  flagReconcileTask: RecurringTaskLike;
}

type LiveConfig = Pick<
  Config,
  | 'REDIS_KEY_PREFIX'
  | 'LIVE_CELLS'
  | 'HEARTBEAT_TTL_MS'
  | 'LEASE_TTL_MS'
  | 'LIVE_SELECT_SCAN_LIMIT'
  | 'NODE_FAILURE_PENALTY'
  | 'NODE_SUCCESS_RECOVERY'
  | 'NODE_COOLDOWN_PENALTY'
  | 'NODE_FAILURE_COOLDOWN_MS'
  | 'LIVE_SWEEP_INTERVAL_MS'
  | 'LIVE_CACHE_TTL_MS'
  | 'LIVE_FLAG_RECONCILE_INTERVAL_MS'
  | 'HEARTBEAT_INTERVAL_MS'
  | 'REPUTATION_FLUSH_INTERVAL_MS'
  | 'REPUTATION_PROBATION_SHARE_PERCENT'
>;

export function createNodesModule(deps: {
  config: LiveConfig;
  pool: Pool;
  redis: Redis;
  log: Logger;
}): NodesModule {
  const c = deps.config;
  const live = new LiveStore(deps.redis, c.REDIS_KEY_PREFIX, {
    cells: c.LIVE_CELLS,
    heartbeatTtlMs: c.HEARTBEAT_TTL_MS,
    leaseTtlMs: c.LEASE_TTL_MS,
    scanLimit: c.LIVE_SELECT_SCAN_LIMIT,
    failurePenalty: c.NODE_FAILURE_PENALTY,
    successRecovery: c.NODE_SUCCESS_RECOVERY,
    probationSharePercent: c.REPUTATION_PROBATION_SHARE_PERCENT,
  });
  const reputation = new ReputationService({
    pool: deps.pool,
    live,
    log: deps.log,
    flushIntervalMs: c.REPUTATION_FLUSH_INTERVAL_MS,
  });
  const presence = new PresenceService({
    pool: deps.pool,
    live,
    log: deps.log,
    heartbeatTtlMs: c.HEARTBEAT_TTL_MS,
  });
  const liveWatch = new RedisLossWatcher(deps.redis, live.keys.liveEpoch(), {
    intervalMs: 500,
    log: deps.log,
  });
  const admin = new NodeAdminService({ pool: deps.pool, live, log: deps.log });
  const matchmaking = new MatchmakingService({
    live,
    admin,
    reputation,
    cooldown: { penaltyThreshold: c.NODE_COOLDOWN_PENALTY, cooldownMs: c.NODE_FAILURE_COOLDOWN_MS },
    log: deps.log,
  });
  const catalog = new LiveCatalogService({
    pool: deps.pool,
    redis: deps.redis,
    live,
    cacheTtlMs: c.LIVE_CACHE_TTL_MS,
    // Nodes not heard by any process since the loss come back within a heartbeat interval.
    recoveryWindowMs: c.HEARTBEAT_INTERVAL_MS + 5_000,
    lossCheck: async () => {
      const lost = await liveWatch.check();
      if (lost) await liveWatch.settled();
      return lost;
    },
  });
  liveWatch.onLoss(() => catalog.rebuild(() => presence.replayRecent()));
  return {
    live,
    presence,
    matchmaking,
    admin,
    catalog,
    reputation,
    liveWatch,
    sweepTask: {
      // One runner per key space: the prefix is part of the lock name.
      name: `nodes.live-sweep:${c.REDIS_KEY_PREFIX}`,
      intervalMs: c.LIVE_SWEEP_INTERVAL_MS,
      run: (signal: AbortSignal) => presence.sweep(signal),
    },
    flagReconcileTask: {
      name: `nodes.flag-reconcile:${c.REDIS_KEY_PREFIX}`,
      intervalMs: c.LIVE_FLAG_RECONCILE_INTERVAL_MS,
      run: (signal: AbortSignal) => admin.reconcileFlags(10_000, signal),
    },
  };
}
