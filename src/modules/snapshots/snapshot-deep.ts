// Deep checks of a snapshot's own tables (pure): balances and holds recomputed from the ledger entries inside it, the
// manifest's config version/digest and rollup range against its tables, and the ledger totals a checkpoint anchors.
import type { LedgerTotals, Manifest } from './manifest.js';

export type { LedgerTotals } from './manifest.js';

// The same derivation as the credits module's ledger verify (credits.repository findMismatches).
// (refund: a spot check gave a settled charge back; network_expense, earning_reversal, forfeit: issue 16.)
const ADDS_AVAILABLE = new Set(['topup', 'bonus', 'release', 'void', 'hold_expire', 'refund']);
const ADDS_EARNED = new Set(['earning', 'network_expense']);
const TAKES_EARNED = new Set(['earning_reversal', 'forfeit']);
const TAKES_AVAILABLE = new Set(['reserve', 'bonus_expire', 'storage_charge']);
const CLOSES_HOLD = new Set(['settle', 'release', 'void', 'hold_expire']);

/** Sections whose rows the deep checks read (decoded one at a time, aggregated: memory is per namespace/node). */
export const deepSections = new Set([
  'credit_balances',
  'node_balances',
  'credit_holds',
  'ledger_entries',
  'network_config_versions',
  'rollup_periods',
]);

/** An exact integer sum: a double while every partial sum is a safe integer, the excess moved into a bigint. */
export class Sum {
  private n = 0;
  private b = 0n;

  add(x: number | bigint): void {
    if (typeof x === 'number') {
      const s = this.n + x;
      if (Number.isSafeInteger(s)) {
        this.n = s;
        return;
      }
    }
    this.b += BigInt(this.n) + BigInt(x);
    this.n = 0;
  }

  sub(x: number | bigint): void {
    this.add(-x);
  }

  value(): bigint {
    return this.b + BigInt(this.n);
  }
}

const big = (v: unknown): bigint => (v === null || v === undefined ? 0n : BigInt(v as number | bigint));

export class DeepChecker {
  private readonly derived = new Map<string, { available: Sum; reserved: Sum }>();
  private readonly nodeDerived = new Map<string, { earned: Sum; paid: Sum }>();
  private entryCount = 0;
  private maxEntryId: number | bigint = 0;
  private readonly pending = new Map<string, bigint>();
  private readonly balances = new Map<string, { available: bigint; reserved: bigint }>();
  private readonly nodes = new Map<string, { earned: bigint; paid: bigint }>();
  private readonly t = {
    entries: 0n,
    lastEntryId: 0n,
    available: 0n,
    reserved: 0n,
    bonusAvailable: 0n,
    earned: 0n,
    paidOut: 0n,
    pendingHolds: 0n,
    pendingHeld: 0n,
  };
  private config: { version: number; digest: string } | null = null;
  private firstDay: string | null = null;
  private lastDay: string | null = null;
  readonly seen = new Set<string>();

  row(section: string, r: unknown[]): void {
    this.seen.add(section);
    switch (section) {
      case 'credit_balances': {
        const b = { available: big(r[1]), reserved: big(r[2]) };
        this.balances.set(r[0] as string, b);
        this.t.available += b.available;
        this.t.reserved += b.reserved;
        this.t.bonusAvailable += big(r[3]);
        return;
      }
      case 'node_balances': {
        const n = { earned: big(r[1]), paid: big(r[2]) };
        this.nodes.set(r[0] as string, n);
        this.t.earned += n.earned;
        this.t.paidOut += n.paid;
        return;
      }
      case 'credit_holds':
        if (r[4] === 'pending') {
          const ns = r[1] as string;
          this.pending.set(ns, (this.pending.get(ns) ?? 0n) + big(r[2]));
          this.t.pendingHolds += 1n;
          this.t.pendingHeld += big(r[2]);
        }
        return;
      case 'ledger_entries':
        this.entry(r);
        return;
      case 'network_config_versions':
        // Rows come in version order: the last one is the head.
        this.config = { version: Number(r[0]), digest: r[1] as string };
        return;
      case 'rollup_periods':
        this.firstDay ??= r[0] as string;
        this.lastDay = r[0] as string;
        return;
    }
  }

  private entry(r: unknown[]): void {
    this.ledgerEntry(
      r[0] as number | bigint,
      r[1] as string,
      r[2] as string | null,
      r[3] as string | null,
      r[5] as number | bigint | null,
    );
  }

  /**
   * One ledger entry (id, kind, namespace, node, amount). Millions of them per snapshot: sums are kept as exact
   * doubles while they stay below 2^53 and spill into bigints beyond (see Sum), so the common row costs no bigint.
   */
  ledgerEntry(
    id: number | bigint,
    kind: string,
    ns: string | null,
    node: string | null,
    amount: number | bigint | null,
  ): void {
    this.seen.add('ledger_entries');
    const a = amount ?? 0;
    this.entryCount += 1;
    if (id > this.maxEntryId) this.maxEntryId = id;
    if (ns !== null) {
      let d = this.derived.get(ns);
      if (!d) this.derived.set(ns, (d = { available: new Sum(), reserved: new Sum() }));
      if (ADDS_AVAILABLE.has(kind)) d.available.add(a);
      if (TAKES_AVAILABLE.has(kind)) d.available.sub(a);
      if (kind === 'reserve') d.reserved.add(a);
      if (CLOSES_HOLD.has(kind)) d.reserved.sub(a);
    }
    if (node !== null) {
      let d = this.nodeDerived.get(node);
      if (!d) this.nodeDerived.set(node, (d = { earned: new Sum(), paid: new Sum() }));
      if (ADDS_EARNED.has(kind)) d.earned.add(a);
      if (TAKES_EARNED.has(kind)) d.earned.sub(a);
      if (kind === 'payout') d.paid.add(a);
    }
  }

  totals(): LedgerTotals {
    const t = { ...this.t, entries: BigInt(this.entryCount), lastEntryId: big(this.maxEntryId) };
    return Object.fromEntries(
      Object.entries(t).map(([k, v]) => [k, v.toString()]),
    ) as unknown as LedgerTotals;
  }

  /** Every problem found, first one first (the caller reports the first). */
  problems(m: Manifest): string[] {
    return [...this.balanceProblems(), ...this.manifestProblems(m)];
  }

  /** Balances and holds against the entries (any set of tables: a snapshot's or the live database's). */
  balanceProblems(): string[] {
    const out: string[] = [];
    if (this.seen.has('ledger_entries') && this.seen.has('credit_balances')) {
      const ids = new Set([...this.derived.keys(), ...this.balances.keys()]);
      for (const ns of [...ids].sort()) {
        const sums = this.derived.get(ns);
        const d = { available: sums?.available.value() ?? 0n, reserved: sums?.reserved.value() ?? 0n };
        const b = this.balances.get(ns) ?? { available: 0n, reserved: 0n };
        if (d.available !== b.available)
          out.push(`balance of namespace ${ns}: available ${b.available}, its entries give ${d.available}`);
        if (d.reserved !== b.reserved)
          out.push(`balance of namespace ${ns}: reserved ${b.reserved}, its entries give ${d.reserved}`);
      }
      for (const ns of [...this.balances.keys()].sort()) {
        const held = this.pending.get(ns) ?? 0n;
        if (this.seen.has('credit_holds') && held !== this.balances.get(ns)!.reserved)
          out.push(
            `balance of namespace ${ns}: reserved ${this.balances.get(ns)!.reserved}, pending holds ${held}`,
          );
      }
    }
    if (this.seen.has('ledger_entries') && this.seen.has('node_balances')) {
      const ids = new Set([...this.nodeDerived.keys(), ...this.nodes.keys()]);
      for (const n of [...ids].sort()) {
        const sums = this.nodeDerived.get(n);
        const d = { earned: sums?.earned.value() ?? 0n, paid: sums?.paid.value() ?? 0n };
        const b = this.nodes.get(n) ?? { earned: 0n, paid: 0n };
        if (d.earned !== b.earned || d.paid !== b.paid)
          out.push(
            `balance of node ${n}: earned/paid ${b.earned}/${b.paid}, its entries give ${d.earned}/${d.paid}`,
          );
      }
    }
    return out;
  }

  private manifestProblems(m: Manifest): string[] {
    const out: string[] = [];
    if (m.kind === 'snapshot') {
      const c = this.config;
      if (
        (m.network.configVersion ?? null) !== (c?.version ?? null) ||
        (m.network.configDigest ?? null) !== (c?.digest ?? null)
      )
        out.push(
          `manifest config ${m.network.configVersion}/${m.network.configDigest} is not the last config version in the snapshot (${c?.version ?? null}/${c?.digest ?? null})`,
        );
      const from = m.rollupRange?.from ?? null;
      const to = m.rollupRange?.to ?? null;
      if (from !== this.firstDay || to !== this.lastDay)
        out.push(
          `manifest rollup range ${from}..${to} differs from the snapshot's periods ${this.firstDay}..${this.lastDay}`,
        );
      if (m.ledger && this.seen.has('ledger_entries')) {
        const t = this.totals();
        for (const k of Object.keys(t) as Array<keyof LedgerTotals>)
          if (m.ledger[k] !== t[k])
            out.push(`manifest ledger total ${k} ${m.ledger[k]} differs from the tables (${t[k]})`);
      }
    }
    return out;
  }
}
