// Public face of the rollups module: hashed daily aggregates of jobs and ledger activity, and partition pruning.
export {
  RollupsService,
  createRollupTask,
  type ArchivedCover,
  type Progress,
  type ProgressFn,
  type PruneResult,
  type RollupOptions,
  type RollupResult,
} from './rollups.service.js';
export type { Totals } from './rollups.repository.js';
export { FINISHED_STATUSES, LATENCY_BUCKETS_MS, addDays, dayOf } from './rollup.js';
export { createRollupsModule, type RollupsModule } from './rollups.module.js';
