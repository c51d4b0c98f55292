// Recurring ledger work for the background runner: release expired holds, expire unused bonuses.
import type { LedgerService } from './credits.service.js';

export function createLedgerTasks(ledger: LedgerService, opts: { sweepIntervalMs: number }) {
  return [
    { name: 'ledger.expire-holds', intervalMs: opts.sweepIntervalMs, run: () => ledger.expireHolds() },
    {
      name: 'ledger.expire-bonuses',
      intervalMs: opts.sweepIntervalMs * 10,
      run: () => ledger.expireBonuses(),
    },
  ];
}
