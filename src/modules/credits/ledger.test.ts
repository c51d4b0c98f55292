// Unit tests of the pure ledger rules (no I/O).
import { describe, expect, it } from 'vitest';
import { AppError } from '../../platform/errors.js';
import { applyOp, toMicro, type BatchState } from './ledger.js';

const ns = '00000000-0000-4000-8000-000000000001';
const job = '00000000-0000-4000-8000-0000000000aa';

function state(available: bigint): BatchState {
  return {
    now: new Date(),
    balances: new Map([[ns, { available, reserved: 0n, bonusAvailable: 0n, dirty: false }]]),
    nodes: new Map(),
    holds: new Map(),
    entries: new Map(),
    newEntries: [],
  };
}

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof AppError ? err.code : 'not-an-app-error';
  }
  return 'no-error';
};

describe('ledger rules', () => {
  it('reserve then settle moves the actual cost and releases the rest', () => {
    const s = state(100n);
    applyOp(s, { kind: 'reserve', namespaceId: ns, jobId: job, amount: 40n, expiresAt: new Date() });
    expect(s.balances.get(ns)).toMatchObject({ available: 60n, reserved: 40n });
    const r = applyOp(s, { kind: 'settle', namespaceId: ns, jobId: job, actual: 15n });
    expect(r).toMatchObject({ charged: 15n, released: 25n, replayed: false });
    expect(s.balances.get(ns)).toMatchObject({ available: 85n, reserved: 0n });
    expect(s.newEntries.map((e) => [e.kind, e.amount])).toEqual([
      ['reserve', 40n],
      ['settle', 15n],
      ['release', 25n],
    ]);
  });

  it('refuses a reservation above available and changes nothing', () => {
    const s = state(10n);
    expect(
      code(() =>
        applyOp(s, { kind: 'reserve', namespaceId: ns, jobId: job, amount: 11n, expiresAt: new Date() }),
      ),
    ).toBe('insufficient_credits');
    expect(s.balances.get(ns)).toMatchObject({ available: 10n, reserved: 0n, dirty: false });
    expect(s.newEntries).toHaveLength(0);
  });

  it('settle is idempotent with the same amount and a conflict with another', () => {
    const s = state(100n);
    applyOp(s, { kind: 'reserve', namespaceId: ns, jobId: job, amount: 40n, expiresAt: new Date() });
    applyOp(s, { kind: 'settle', namespaceId: ns, jobId: job, actual: 15n });
    expect(applyOp(s, { kind: 'settle', namespaceId: ns, jobId: job, actual: 15n })).toMatchObject({
      replayed: true,
      charged: 15n,
    });
    expect(code(() => applyOp(s, { kind: 'settle', namespaceId: ns, jobId: job, actual: 16n }))).toBe(
      'idempotency_conflict',
    );
    expect(code(() => applyOp(s, { kind: 'void', namespaceId: ns, jobId: job }))).toBe('hold_not_pending');
    expect(s.balances.get(ns)).toMatchObject({ available: 85n, reserved: 0n });
  });

  it('charges consume bonus credit first and an expiring bonus removes only what is left of it', () => {
    const s = state(0n);
    applyOp(s, { kind: 'topup', namespaceId: ns, amount: 100n, idemKey: 't1' });
    applyOp(s, { kind: 'bonus', namespaceId: ns, amount: 50n, idemKey: 'b1' });
    applyOp(s, { kind: 'storage_charge', namespaceId: ns, amount: 30n, idemKey: 'day1' });
    const r = applyOp(s, {
      kind: 'bonus_expire',
      namespaceId: ns,
      bonusIdemKey: `bonus:${ns}:b1`,
      grant: 50n,
    });
    expect(r).toMatchObject({ amount: 20n });
    expect(s.balances.get(ns)).toMatchObject({ available: 100n, bonusAvailable: 0n });
  });

  it('accepts only integer micro-credit amounts', () => {
    expect(toMicro(5, 'x')).toBe(5n);
    expect(toMicro('7', 'x')).toBe(7n);
    for (const bad of [1.5, -1, 0, '1.0', 'abc', Number.MAX_SAFE_INTEGER + 1, null]) {
      expect(code(() => toMicro(bad, 'x'))).toBe('invalid_amount');
    }
    expect(toMicro(0, 'x', { allowZero: true })).toBe(0n);
  });
});
