// The deep checks' derivation of balances from ledger entries knows the spot-check kinds (issue 16): a refund
// gives a settled charge back; network expenses add to a node's earnings, reversals and forfeits take from them.
import { describe, expect, it } from 'vitest';
import { DeepChecker } from './snapshot-deep.js';

const NS = '00000000-0000-4000-8000-000000000001';
const NODE = '0x00000000000000000000000000000000000000aa';

function checker(balance: { available: number; earned: number }): DeepChecker {
  const d = new DeepChecker();
  const entries: Array<[string, string | null, string | null, number]> = [
    ['topup', NS, null, 1000],
    ['reserve', NS, null, 100],
    ['settle', NS, null, 100],
    ['refund', NS, null, 100],
    ['earning', null, NODE, 80],
    ['network_expense', null, NODE, 10],
    ['earning_reversal', null, NODE, 80],
    ['forfeit', null, NODE, 4],
  ];
  entries.forEach(([kind, ns, node, amount], i) =>
    d.row('ledger_entries', [i + 1, kind, ns, node, null, amount]),
  );
  d.row('credit_balances', [NS, balance.available, 0, 0]);
  d.row('node_balances', [NODE, balance.earned, 0]);
  return d;
}

describe('snapshot deep checks', () => {
  it('derive balances with refunds, network expenses, earning reversals and forfeits', () => {
    // available: 1000 - 100 reserved, + 100 refunded; earned: 80 + 10 - 80 - 4.
    expect(checker({ available: 1000, earned: 6 }).balanceProblems()).toEqual([]);
    expect(checker({ available: 900, earned: 90 }).balanceProblems()).toEqual([
      `balance of namespace ${NS}: available 900, its entries give 1000`,
      `balance of node ${NODE}: earned/paid 90/0, its entries give 6/0`,
    ]);
  });
});
