// The public network status: online nodes, GPUs and models per environment, queue depths, requests per second
// and latency over the last minute. Cached in Redis for `ttlMs` (and computed once per process at a time), so
// a burst of status calls costs one computation.
import { ENVIRONMENTS, type Environment } from '../../config/vocabulary.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { Redis } from '../../stores/redis/client.js';
import { RedisKeys } from '../../stores/redis/keys.js';

export interface NetworkStatusSummary {
  environments: Record<
    Environment,
    {
      onlineNodes: number;
      gpus: number;
      models: Array<{
        model: string;
        onlineNodes: number;
        idleNodes: number;
        versions: Record<string, number>;
      }>;
    }
  >;
  queues: Record<string, number>;
  /** Records lag: record messages waiting for the recorder (MongoDB) and dead-lettered ones; absent where
   * the process has no broker view of the records stream. */
  records?: RecordsBacklogSummary;
  lastMinute: {
    /** Jobs finished within the window. */
    finished: number;
    failed: number;
    requestsPerS: number;
    /** finished_at − created_at, milliseconds; null without finished jobs. */
    latencyP50Ms: number | null;
    latencyP99Ms: number | null;
  };
  computedAtMs: number;
}

export interface RecordsBacklogSummary {
  /** Messages (record batches and lifecycle events) published and not yet written to MongoDB. */
  queuedMessages: number;
  /** Messages refused by the recorder, waiting in the records dead-letter queue. */
  deadLetteredMessages: number;
}

export interface NetworkStatusDeps {
  pool: Pool;
  redis: Redis;
  /** REDIS_KEY_PREFIX. */
  prefix: string;
  ttlMs: number;
  windowMs?: number;
  liveStatus: () => Promise<{ environments: Record<Environment, { onlineNodes: number; gpus: number }> }>;
  catalog: (
    environment: Environment,
  ) => Promise<
    Array<{ model: string; onlineNodes: number; idleNodes: number; versions: Record<string, number> }>
  >;
  queueDepths: () => Promise<Record<string, number>>;
  recordsBacklog?: () => Promise<RecordsBacklogSummary>;
}

export class NetworkStatusService {
  private readonly keys: RedisKeys;
  private inFlight: Promise<NetworkStatusSummary> | undefined;

  constructor(private readonly deps: NetworkStatusDeps) {
    this.keys = new RedisKeys(deps.prefix);
  }

  /** The summary and whether it came from the cache. */
  async summary(): Promise<{ summary: NetworkStatusSummary; cached: boolean }> {
    const hit = await this.deps.redis.get(this.keys.statusSummaryCache());
    if (hit) return { summary: JSON.parse(hit) as NetworkStatusSummary, cached: true };
    // One computation per process at a time; other processes read what it stores.
    this.inFlight ??= this.compute().finally(() => {
      this.inFlight = undefined;
    });
    return { summary: await this.inFlight, cached: false };
  }

  private async compute(): Promise<NetworkStatusSummary> {
    const [live, catalogs, queues, lastMinute, records] = await Promise.all([
      this.deps.liveStatus(),
      Promise.all(ENVIRONMENTS.map((e) => this.deps.catalog(e))),
      this.deps.queueDepths(),
      this.lastMinute(),
      this.deps.recordsBacklog?.(),
    ]);
    const environments = {} as NetworkStatusSummary['environments'];
    ENVIRONMENTS.forEach((env, i) => {
      environments[env] = {
        onlineNodes: live.environments[env]?.onlineNodes ?? 0,
        gpus: live.environments[env]?.gpus ?? 0,
        models: catalogs[i]!.map((m) => ({
          model: m.model,
          onlineNodes: m.onlineNodes,
          idleNodes: m.idleNodes,
          versions: m.versions,
        })),
      };
    });
    const summary: NetworkStatusSummary = {
      environments,
      queues,
      ...(records ? { records } : {}),
      lastMinute,
      computedAtMs: Date.now(),
    };
    await this.deps.redis.set(
      this.keys.statusSummaryCache(),
      JSON.stringify(summary),
      'PX',
      Math.max(1, this.deps.ttlMs),
    );
    return summary;
  }

  private async lastMinute(): Promise<NetworkStatusSummary['lastMinute']> {
    const windowMs = this.deps.windowMs ?? 60_000;
    // created_at bounds the scan to recent partitions; no job lives longer than a day in the queue.
    const r = await this.deps.pool.query<{
      finished: string;
      failed: string;
      p50: number | null;
      p99: number | null;
    }>(
      `select count(*)::text as finished,
              count(*) filter (where status <> 'succeeded')::text as failed,
              percentile_cont(0.5) within group (order by extract(epoch from finished_at - created_at) * 1000) as p50,
              percentile_cont(0.99) within group (order by extract(epoch from finished_at - created_at) * 1000) as p99
         from jobs
        where finished_at >= now() - make_interval(secs => $1::double precision / 1000)
          and created_at >= now() - interval '1 day'`,
      [windowMs],
    );
    const row = r.rows[0]!;
    const finished = Number(row.finished);
    return {
      finished,
      failed: Number(row.failed),
      requestsPerS: Math.round((finished / (windowMs / 1000)) * 1000) / 1000,
      latencyP50Ms: row.p50 === null ? null : Math.round(Number(row.p50)),
      latencyP99Ms: row.p99 === null ? null : Math.round(Number(row.p99)),
    };
  }
}
