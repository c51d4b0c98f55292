// The `workers` role: the recurring tasks on one TaskRunner (each on one process at a time, under its advisory
// lock) and the records stream consumer (RabbitMQ → MongoDB in batches). Every process publishes record events
// (the backbone's record sink); only workers write them.
import { systemClock } from '../platform/clock.js';
import { ManagedConnection } from '../stores/rabbitmq/reconnect.js';
import { createLedgerTasks } from '../modules/credits/index.js';
import {
  createRecentJobsTask,
  createResultRetentionTask,
  createStaleJobsTask,
  type JobRecordSink,
} from '../modules/jobs/index.js';
import {
  DirectoryTarget,
  RecorderService,
  RecordStreamConsumer,
  RetentionService,
  StorageBillingService,
  createRecordsTasks,
  recordStreamDeployment,
} from '../modules/records/index.js';
import { RollupsService, createRollupTask } from '../modules/rollups/index.js';
import type { Backbone } from '../app/compose.js';
import { TaskRunner, type RecurringTask } from './task-runner.js';

/** The records stream's names (DEPLOYMENT) and the stores they feed (checked against other backbones). */
function deploymentOptions(c: Backbone['config']) {
  const d = recordStreamDeployment(c);
  return { names: d.names, deploymentStores: d.stores };
}

/** The tasks of the workers role, built from the backbone and its config. */
export function workerTasks(b: Backbone, records?: JobRecordSink): RecurringTask[] {
  const c = b.config;
  const retention = new RetentionService({
    pool: b.pool,
    repo: b.records.repo,
    target: new DirectoryTarget(c.RECORDS_EXPORT_DIR),
    clock: systemClock,
    log: b.log,
    options: { fileMaxDocs: c.RECORDS_EXPORT_FILE_MAX_DOCS, deleteBatchSize: c.RECORDS_DELETE_BATCH_SIZE },
  });
  const billing = new StorageBillingService({
    pool: b.pool,
    repo: b.records.repo,
    ledger: b.ledger,
    clock: systemClock,
    log: b.log,
    options: { defaultRetentionDays: c.RECORDS_DEFAULT_RETENTION_DAYS, graceMs: c.RECORDS_PLAN_GRACE_MS },
  });
  const rollups = new RollupsService({
    pool: b.pool,
    log: b.log,
    clock: systemClock,
    audit: b.audit,
    options: {
      detailWindowDays: c.ROLLUP_DETAIL_WINDOW_DAYS,
      maxDaysPerTransaction: c.ROLLUP_MAX_DAYS_PER_TX,
    },
  });
  return [
    ...createLedgerTasks(b.ledger, { sweepIntervalMs: c.LEDGER_SWEEP_INTERVAL_MS }),
    b.nodes.sweepTask,
    b.nodes.flagReconcileTask,
    ...createRecordsTasks({ retention, billing, retentionIntervalMs: c.RECORDS_RETENTION_INTERVAL_MS }),
    createRollupTask(rollups, c.ROLLUP_INTERVAL_MS),
    {
      // An idle lane is removed within ROUTING_LANE_IDLE_MS + half of it.
      name: 'routing.prune-lanes',
      intervalMs: Math.max(1000, Math.floor(c.ROUTING_LANE_IDLE_MS / 2)),
      run: () => b.routing.pruneIdleLanes(),
    },
    createRecentJobsTask({
      pool: b.pool,
      jobs: b.jobs,
      log: b.log,
      ...(records ? { records } : {}),
      options: {
        intervalMs: c.JOBS_RECOVER_INTERVAL_MS,
        graceMs: c.JOBS_RECOVER_GRACE_MS,
        windowMs: 24 * 3600_000,
        batchSize: 500,
      },
    }),
    createStaleJobsTask({
      pool: b.pool,
      log: b.log,
      ...(records ? { records } : {}),
      options: {
        intervalMs: c.JOBS_STALE_RECONCILE_INTERVAL_MS,
        graceMs: c.JOBS_STALE_GRACE_MS,
        batchSize: 500,
      },
    }),
    // Retention is in days: a minute's lag in freeing the rows is nothing (reads already answer 410).
    createResultRetentionTask({ pool: b.pool, log: b.log, options: { intervalMs: 60_000, batchSize: 1000 } }),
  ];
}

export interface Workers {
  runner: TaskRunner;
  consumer: RecordStreamConsumer;
  /** Idempotent: stops the tasks (running ones finish or see their abort signal), drains the consumer's
   * batch, closes its connection. */
  stop(): Promise<void>;
}

export async function startWorkers(b: Backbone): Promise<Workers> {
  const c = b.config;
  const log = b.log.child({ component: 'workers' });
  const recorder = new RecorderService({
    repo: b.records.repo,
    blobs: b.records.blobs,
    policies: b.records.policies,
    log: b.log,
    options: {
      largePayloadBytes: c.RECORDS_LARGE_PAYLOAD_BYTES,
      maxDocumentBytes: c.RECORDS_MAX_DOCUMENT_BYTES,
    },
  });
  const connection = new ManagedConnection({
    url: c.AMQP_URL,
    name: `rty-${b.instanceId}-records`,
    log: b.log,
    reconnectDelayMs: c.ROUTING_RECONNECT_DELAY_MS,
  });
  const consumer = new RecordStreamConsumer({
    connection,
    recorder,
    log: b.log,
    ...deploymentOptions(c),
    registry: b.metrics.registry,
    options: {
      prefetch: c.RECORDS_CONSUMER_PREFETCH,
      batchMaxEvents: c.RECORDS_CONSUMER_BATCH_MAX_EVENTS,
      batchMaxWaitMs: c.RECORDS_CONSUMER_BATCH_MAX_WAIT_MS,
      retryDelayMs: c.RECORDS_CONSUMER_RETRY_DELAY_MS,
    },
  });
  const tasks = workerTasks(b, b.recordSink);
  const runner = new TaskRunner({ pool: b.pool, log: b.log, tasks });
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      const errors: unknown[] = [];
      await runner.stop().catch((e: unknown) => errors.push(e));
      await consumer.stop().catch((e: unknown) => errors.push(e));
      await connection.stop().catch((e: unknown) => errors.push(e));
      if (errors.length > 0) log.error({ errors }, 'workers stop had errors');
    })());
  try {
    await connection.start();
    await consumer.start();
  } catch (err) {
    await stop();
    throw err;
  }
  runner.start();
  log.info({ tasks: tasks.map((t) => t.name) }, 'workers started');
  return { runner, consumer, stop };
}
