// Builds the credits module: the ledger (group commit per config; `unbatched` for one-shot CLI commands, where
// waiting for company is pointless) and its recurring tasks (hold and bonus expiry).
import type { Config } from '../../config/config.js';
import type { Logger } from '../../platform/logger.js';
import type { RecurringTask } from '../../platform/tasks.js';
import type { Stores } from '../../stores/stores.js';
import { LedgerService } from './credits.service.js';
import { createLedgerTasks } from './credits.tasks.js';

export interface CreditsModule {
  ledger: LedgerService;
  tasks: RecurringTask[];
}

export function createCreditsModule(deps: {
  config: Pick<
    Config,
    | 'LEDGER_BATCH_MAX_WAIT_MS'
    | 'LEDGER_BATCH_MAX_SIZE'
    | 'LEDGER_BATCH_CONCURRENCY'
    | 'LEDGER_HOLD_TIMEOUT_MS'
    | 'LEDGER_SWEEP_INTERVAL_MS'
    | 'NODE_EARNINGS_HOLD_BACK_MS'
  >;
  stores: Pick<Stores, 'pool'>;
  log: Logger;
  /** One operation per transaction, at once (a CLI command's few operations). */
  unbatched?: boolean;
}): CreditsModule {
  const c = deps.config;
  const ledger = new LedgerService({
    pool: deps.stores.pool,
    log: deps.log,
    options: deps.unbatched
      ? {
          batchMaxWaitMs: 0,
          batchMaxSize: 1,
          batchConcurrency: 1,
          holdTimeoutMs: c.LEDGER_HOLD_TIMEOUT_MS,
          nodeEarningsHoldBackMs: c.NODE_EARNINGS_HOLD_BACK_MS,
        }
      : {
          batchMaxWaitMs: c.LEDGER_BATCH_MAX_WAIT_MS,
          batchMaxSize: c.LEDGER_BATCH_MAX_SIZE,
          batchConcurrency: c.LEDGER_BATCH_CONCURRENCY,
          holdTimeoutMs: c.LEDGER_HOLD_TIMEOUT_MS,
          nodeEarningsHoldBackMs: c.NODE_EARNINGS_HOLD_BACK_MS,
        },
  });
  return { ledger, tasks: createLedgerTasks(ledger, { sweepIntervalMs: c.LEDGER_SWEEP_INTERVAL_MS }) };
}
