// Recurring ledger work for the background runner: release expired holds, expire unused bonuses. Each run
// stops at its task's abort signal (lock lost, or stopping).
import type { LedgerService } from './credits.service.js';

export function createLedgerTasks(ledger: LedgerService, opts: { sweepIntervalMs: number }) {
  return [
    {
      name: 'ledger.expire-holds',
      intervalMs: opts.sweepIntervalMs,
      run: (signal: AbortSignal) => ledger.expireHolds(new Date(), 1000, signal),
    },
    {
      name: 'ledger.expire-bonuses',
      intervalMs: opts.sweepIntervalMs * 10,
      run: (signal: AbortSignal) => ledger.expireBonuses(new Date(), 1000, signal),
    },
  ];
}
