// Builds the rollups module: daily summaries of finished jobs (PostgreSQL) and its recurring task.
import type { Config } from '../../config/config.js';
import { systemClock } from '../../platform/clock.js';
import type { Logger } from '../../platform/logger.js';
import type { RecurringTask } from '../../platform/tasks.js';
import type { Stores } from '../../stores/stores.js';
import type { AuditService } from '../audit/index.js';
import { RollupsService, createRollupTask } from './rollups.service.js';

export interface RollupsModule {
  rollups: RollupsService;
  tasks: RecurringTask[];
}

export function createRollupsModule(deps: {
  config: Pick<Config, 'ROLLUP_DETAIL_WINDOW_DAYS' | 'ROLLUP_MAX_DAYS_PER_TX' | 'ROLLUP_INTERVAL_MS'>;
  stores: Pick<Stores, 'pool'>;
  log: Logger;
  audit: AuditService;
}): RollupsModule {
  const c = deps.config;
  const rollups = new RollupsService({
    pool: deps.stores.pool,
    log: deps.log,
    clock: systemClock,
    audit: deps.audit,
    options: {
      detailWindowDays: c.ROLLUP_DETAIL_WINDOW_DAYS,
      maxDaysPerTransaction: c.ROLLUP_MAX_DAYS_PER_TX,
    },
  });
  return { rollups, tasks: [createRollupTask(rollups, c.ROLLUP_INTERVAL_MS)] };
}
