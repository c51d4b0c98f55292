// The `workers` role: the recurring tasks it is handed (every module's, composed in app/compose.ts) on one
// TaskRunner (each on one process at a time, under its advisory lock), and the records stream consumer
// (RabbitMQ → MongoDB in batches). Every process publishes record events; only workers write them.
import type { Logger } from '../platform/logger.js';
import type { RecurringTask } from '../platform/tasks.js';
import type { RecordsConsumer, RecordsModule } from '../modules/records/index.js';
import type { Metrics } from '../platform/metrics.js';
import { TaskRunner, type TaskRunnerDeps } from './task-runner.js';

/** What the workers role uses. */
export interface WorkersDeps {
  /** The runner's single-runner election (advisory locks). */
  pool: TaskRunnerDeps['pool'];
  log: Logger;
  instanceId: string;
  metrics: Pick<Metrics, 'registry'>;
  tasks: RecurringTask[];
  records: Pick<RecordsModule, 'createConsumer'>;
}

export interface Workers {
  runner: TaskRunner;
  consumer: RecordsConsumer['consumer'];
  /** Idempotent: stops the tasks (running ones finish or see their abort signal), drains the consumer's
   * batch, closes its connection. */
  stop(): Promise<void>;
}

export async function startWorkers(b: WorkersDeps): Promise<Workers> {
  const log = b.log.child({ component: 'workers' });
  const records = b.records.createConsumer({
    name: `rty-${b.instanceId}-records`,
    registry: b.metrics.registry,
  });
  const runner = new TaskRunner({ pool: b.pool, log: b.log, tasks: b.tasks });
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      const errors: unknown[] = [];
      await runner.stop().catch((e: unknown) => errors.push(e));
      await records.stop().catch((e: unknown) => errors.push(e));
      if (errors.length > 0) log.error({ errors }, 'workers stop had errors');
    })());
  try {
    await records.start();
  } catch (err) {
    await stop();
    throw err;
  }
  runner.start();
  log.info({ tasks: b.tasks.map((t) => t.name) }, 'workers started');
  return { runner, consumer: records.consumer, stop };
}
