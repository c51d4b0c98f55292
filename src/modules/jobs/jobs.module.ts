// Builds the jobs module: job results and streams (Redis, start() the results before use), the job flow (reserve
// → publish → dispatch → settle, through the given executor) and its recurring tasks (recovery of recent jobs,
// stale-job reconciliation, result retention).
import type { Config } from '../../config/config.js';
import type { Logger } from '../../platform/logger.js';
import type { Metrics } from '../../platform/metrics.js';
import type { RecurringTask } from '../../platform/tasks.js';
import type { Stores } from '../../stores/stores.js';
import type { LedgerService } from '../credits/index.js';
import type { AuditService } from '../audit/index.js';
import type { MatchmakingService, NodeAdminService } from '../nodes/index.js';
import type { RoutingService } from '../routing/index.js';
import type { JobRecordSink } from './job-records.js';
import { JobResults } from './job-results.js';
import { JobStreams } from './job-stream.js';
import { createRecentJobsTask } from './jobs.recovery.js';
import type { NodeExecutor } from './job.js';
import type { PriceQuoter } from './job-price.js';
import { JobsService } from './jobs.service.js';
import { SpotChecks } from './spot-check.service.js';
import { QcSettler } from './spot-check.settle.js';
import { createResultRetentionTask, createStaleJobsTask } from './jobs.tasks.js';

export interface JobsModule {
  jobs: JobsService;
  tasks: RecurringTask[];
}

/** The jobs' Redis channels: results for waiting clients, deltas of streamed jobs (start() the results). */
export interface JobChannels {
  results: JobResults;
  /** Streamed jobs' deltas from the node's socket to the waiting client (in process or over Redis). */
  streams: JobStreams;
}

/** Built before the node gateway (which emits the deltas) and the job flow (which delivers through it). */
export function createJobChannels(deps: {
  config: Pick<Config, 'REDIS_KEY_PREFIX' | 'JOB_RESULT_TTL_MS'>;
  stores: Pick<Stores, 'redis' | 'subscriber'>;
  log: Logger;
}): JobChannels {
  const { config: c, log } = deps;
  const { redis, subscriber } = deps.stores;
  return {
    results: new JobResults({
      redis,
      subscriber,
      prefix: c.REDIS_KEY_PREFIX,
      ttlMs: c.JOB_RESULT_TTL_MS,
      log,
    }),
    streams: new JobStreams({ redis, subscriber, prefix: c.REDIS_KEY_PREFIX, log }),
  };
}

export function createJobsModule(deps: {
  config: Config;
  stores: Pick<Stores, 'pool'>;
  log: Logger;
  metrics: Metrics;
  channels: JobChannels;
  ledger: LedgerService;
  routing: RoutingService;
  matchmaking: MatchmakingService;
  /** Delivers a leased job to its node (the node gateway in a serving process). */
  executor: NodeExecutor;
  /** Where job record events go (RabbitMQ → recorder). */
  records: JobRecordSink;
  /** The price table in force (without one, every job pays PRICE_PER_TOKEN_MICRO per token). */
  prices?: PriceQuoter;
  /** Spot checks (off when both QC sample shares are 0): node flags and operators, and the audit log. */
  admin: NodeAdminService;
  audit: AuditService;
}): JobsModule {
  const { config: c, log, records } = deps;
  const { pool } = deps.stores;
  const spotChecks =
    c.QC_SAMPLE_BASIS_POINTS + c.QC_PROBATION_SAMPLE_BASIS_POINTS > 0
      ? new SpotChecks({
          matchmaking: deps.matchmaking,
          admin: deps.admin,
          executor: deps.executor,
          log,
          settler: new QcSettler({
            pool,
            ledger: deps.ledger,
            admin: deps.admin,
            audit: deps.audit,
            matchmaking: deps.matchmaking,
            records,
            log,
            shadowBanFailures: c.QC_SHADOW_BAN_FAILURES,
          }),
          options: {
            sampleBasisPoints: c.QC_SAMPLE_BASIS_POINTS,
            probationSampleBasisPoints: c.QC_PROBATION_SAMPLE_BASIS_POINTS,
            nodeSharePercent: BigInt(c.NODE_SHARE_PERCENT),
            jobTimeoutMs: c.JOB_ATTEMPT_TIMEOUT_MS,
          },
        })
      : undefined;
  const jobs = new JobsService({
    pool,
    ledger: deps.ledger,
    routing: deps.routing,
    matchmaking: deps.matchmaking,
    executor: deps.executor,
    log,
    results: deps.channels.results,
    metrics: deps.metrics,
    records,
    ...(deps.prices ? { prices: deps.prices } : {}),
    ...(spotChecks ? { spotChecks } : {}),
    options: {
      pricePerTokenMicro: BigInt(c.PRICE_PER_TOKEN_MICRO),
      nodeSharePercent: BigInt(c.NODE_SHARE_PERCENT),
      maxAttempts: c.ROUTING_MAX_ATTEMPTS,
      jobTimeoutMs: c.JOB_ATTEMPT_TIMEOUT_MS,
      capacityWaitMs: c.JOB_CAPACITY_WAIT_MS,
    },
  });
  const tasks: RecurringTask[] = [
    createRecentJobsTask({
      pool,
      jobs,
      log,
      records,
      brokerUpForMs: () => deps.routing.connection.connectedForMs(),
      options: {
        intervalMs: c.JOBS_RECOVER_INTERVAL_MS,
        graceMs: c.JOBS_RECOVER_GRACE_MS,
        windowMs: 24 * 3600_000,
        batchSize: 500,
      },
    }),
    createStaleJobsTask({
      pool,
      log,
      records,
      options: {
        intervalMs: c.JOBS_STALE_RECONCILE_INTERVAL_MS,
        graceMs: c.JOBS_STALE_GRACE_MS,
        batchSize: 500,
      },
    }),
    // Retention is in days: a minute's lag in freeing the rows is nothing (reads already answer 410).
    createResultRetentionTask({ pool, log, options: { intervalMs: 60_000, batchSize: 1000 } }),
  ];
  return { jobs, tasks };
}
