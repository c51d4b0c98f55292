// The records module's recurring tasks, shaped for src/background/task-runner.ts (which runs each on one
// process at a time under a PostgreSQL advisory lock).
import type { RecurringTask } from '../../platform/tasks.js';
import type { RetentionService } from './retention.service.js';
import type { StorageBillingService } from './storage-billing.service.js';

export type RecordsTask = RecurringTask;

export function createRecordsTasks(deps: {
  retention: RetentionService;
  billing: StorageBillingService;
  retentionIntervalMs: number;
}): RecordsTask[] {
  return [
    {
      // A plan that lapses here shortens the namespace's retention; the next sweep exports and deletes the rest.
      name: 'records-storage-charge',
      intervalMs: 60 * 60 * 1000,
      run: (signal) => deps.billing.chargeAll(signal),
    },
    {
      name: 'records-retention',
      intervalMs: deps.retentionIntervalMs,
      run: (signal) => deps.retention.sweep(signal),
    },
  ];
}
