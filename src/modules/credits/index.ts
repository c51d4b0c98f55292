// Public face of the credits module (the ledger).
export { LedgerService, type LedgerOptions } from './credits.service.js';
export { createLedgerTasks } from './credits.tasks.js';
export type { BalanceView, LedgerMismatch } from './credits.repository.js';
export { toMicro, type Micro, type OpResult } from './ledger.js';
