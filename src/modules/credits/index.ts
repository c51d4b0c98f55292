// Public face of the credits module (the ledger).
export { isBatchRace, LedgerService, type LedgerOptions } from './credits.service.js';
export { createLedgerTasks } from './credits.tasks.js';
export type { BalanceView, LedgerMismatch } from './credits.repository.js';
export { toMicro, type LedgerOp, type Micro, type OpResult } from './ledger.js';
export { createCreditsModule, type CreditsModule } from './credits.module.js';
