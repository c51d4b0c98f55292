// SQL of the ledger: load-and-lock a batch's rows, write its results set-wise, verify balances, find expiring holds.
import { AppError } from '../../platform/errors.js';
import type { PoolClient, Queryable } from '../../stores/postgres/pool.js';
import type { Balance, BatchState, ExistingEntry, Hold, HoldStatus, NodeBalance } from './ledger.js';

const str = (v: bigint) => v.toString();

export interface BalanceView {
  namespaceId: string;
  available: bigint;
  reserved: bigint;
  bonusAvailable: bigint;
}

export interface LedgerMismatch {
  scope: 'namespace' | 'node' | 'hold';
  id: string;
  field: string;
  stored: string;
  derived: string;
}

export class CreditsRepository {
  /**
   * Two round trips: first lock the balance rows of the batch's namespaces (sorted, so batches never deadlock),
   * then read holds and idempotency entries in a NEW statement. Under READ COMMITTED a statement keeps the
   * snapshot it started with, so reading holds in the locking statement could see a hold as pending that the
   * batch we waited for has just closed. Holds need no row lock of their own: a hold only changes under its
   * namespace's lock. Node rows are locked last (sorted) and only when the batch has payouts (earnings are deltas).
   */
  async loadBatch(
    tx: PoolClient,
    ids: { namespaceIds: string[]; nodeAddresses: string[]; jobIds: string[]; idemKeys: string[] },
    now: Date,
    /** Earnings younger than this (ms, by the database clock that stamped them) are held back from payouts. */
    holdBackMs = 0,
  ): Promise<BatchState> {
    type Loaded = {
      h: Array<{ j: string; n: string; a: string; sa: string | null; st: HoldStatus; x: string }> | null;
      e: Array<{
        i: string;
        k: ExistingEntry['kind'];
        n: string | null;
        a: string | null;
        amt: string;
      }> | null;
    };
    // Named statements are parsed and planned once per connection (this path runs thousands of times a second).
    const locked = await tx.query<{
      namespace_id: string;
      available: bigint;
      reserved: bigint;
      bonus_available: bigint;
    }>({
      name: 'ledger_lock_balances',
      text: `select namespace_id, available, reserved, bonus_available from credit_balances
             where namespace_id = any($1::uuid[]) order by namespace_id for update`,
      values: [ids.namespaceIds],
    });
    const balances = new Map<string, Balance>();
    for (const x of locked.rows) {
      balances.set(x.namespace_id, {
        available: x.available,
        reserved: x.reserved,
        bonusAvailable: x.bonus_available,
        dirty: false,
      });
    }
    // bigints travel as text inside the JSON so that no precision is lost.
    // Not a named statement: a cached generic plan for `= any($1)` was seen to pick sequential scans once the
    // tables grew (20 ms per batch instead of under 1 ms); a custom plan per call keeps the index lookups.
    const r = await tx.query<Loaded>({
      text: `with h as (
         select job_id::text as j, namespace_id::text as n, amount::text as a, settled_amount::text as sa, status as st, expires_at as x
         from credit_holds where job_id = any($1::uuid[])),
       e as (
         select idem_key as i, kind as k, namespace_id::text as n, node_address as a, amount::text as amt
         from ledger_entries where idem_key = any($2::text[]))
       select (select json_agg(h) from h) as h, (select json_agg(e) from e) as e`,
      values: [ids.jobIds, ids.idemKeys],
    });
    const row = r.rows[0]!;
    const holds = new Map<string, Hold>();
    for (const x of row.h ?? []) {
      holds.set(x.j, {
        jobId: x.j,
        namespaceId: x.n,
        amount: BigInt(x.a),
        settledAmount: x.sa === null ? null : BigInt(x.sa),
        status: x.st,
        expiresAt: new Date(x.x),
        isNew: false,
        dirty: false,
      });
    }
    const entries = new Map<string, ExistingEntry>();
    for (const x of row.e ?? [])
      entries.set(x.i, { kind: x.k, namespaceId: x.n, nodeAddress: x.a, amount: BigInt(x.amt) });
    const nodes = new Map<string, NodeBalance>();
    if (ids.nodeAddresses.length > 0) {
      // Only batches with payouts or spot-check consequences load node rows (rare): the held-back sum reads the
      // node's earnings (less what was reversed or forfeited of them) through the node index of ledger_entries.
      const n = await tx.query<{ node_address: string; earned: bigint; paid_out: bigint; held: string }>(
        `select b.node_address, b.earned, b.paid_out,
                (select coalesce(sum(case when e.kind in ('earning', 'network_expense') then e.amount else -e.amount end), 0)
                   from ledger_entries e
                  where e.node_address = b.node_address
                    and e.kind in ('earning', 'network_expense', 'earning_reversal', 'forfeit')
                    and e.created_at > now() - make_interval(secs => $2::float8 / 1000))::text as held
           from node_balances b where b.node_address = any($1::text[]) order by b.node_address for update`,
        [ids.nodeAddresses, holdBackMs],
      );
      for (const x of n.rows)
        nodes.set(x.node_address, {
          earned: x.earned,
          paidOut: x.paid_out,
          heldBack: BigInt(x.held) > 0n ? BigInt(x.held) : 0n,
          deltaEarned: 0n,
          deltaPaidOut: 0n,
        });
    }
    return { now, balances, nodes, holds, entries, newEntries: [] };
  }

  /** One statement (data-modifying CTEs) writes balances, holds and entries; node totals follow when present. */
  async writeBatch(tx: PoolClient, s: BatchState): Promise<void> {
    const dirty = [...s.balances.entries()].filter(([, b]) => b.dirty);
    // Sorted by job id so that two batches touching the same new holds lock them in the same order.
    const holds = [...s.holds.values()].filter((h) => h.dirty).sort((a, b) => (a.jobId < b.jobId ? -1 : 1));
    const created = holds.filter((h) => h.isNew);
    const changed = holds.filter((h) => !h.isNew);
    const e = s.newEntries;
    const settled = (h: Hold) => (h.settledAmount === null ? null : str(h.settledAmount));
    if (dirty.length + holds.length + e.length > 0) {
      const w = await tx.query<{ closed: number }>({
        name: 'ledger_write_batch',
        text: `with ub as (
           update credit_balances b set available = v.available, reserved = v.reserved, bonus_available = v.bonus, updated_at = $1
           from unnest($2::uuid[], $3::int8[], $4::int8[], $5::int8[]) as v(namespace_id, available, reserved, bonus)
           where b.namespace_id = v.namespace_id),
         ih as (
           insert into credit_holds (job_id, namespace_id, amount, settled_amount, status, expires_at, created_at, closed_at)
           select j, n, a, sa, st, x, $1, case when st = 'pending' then null else $1 end
           from unnest($6::uuid[], $7::uuid[], $8::int8[], $9::int8[], $10::text[], $11::timestamptz[]) as v(j, n, a, sa, st, x)),
         uh as (
           update credit_holds h set status = v.st, settled_amount = v.sa, closed_at = $1
           from unnest($12::uuid[], $13::text[], $14::int8[]) as v(j, st, sa) where h.job_id = v.j and h.status = 'pending'
           returning 1),
         ie as (
           insert into ledger_entries (kind, namespace_id, node_address, job_id, amount, idem_key, expires_at, created_at)
         select k, n, a, j, amt, i, x, $1
         from unnest($15::text[], $16::uuid[], $17::text[], $18::uuid[], $19::int8[], $20::text[], $21::timestamptz[]) as v(k, n, a, j, amt, i, x))
         select (select count(*) from uh)::int as closed`,
        values: [
          s.now,
          dirty.map(([id]) => id),
          dirty.map(([, b]) => str(b.available)),
          dirty.map(([, b]) => str(b.reserved)),
          dirty.map(([, b]) => str(b.bonusAvailable)),
          created.map((h) => h.jobId),
          created.map((h) => h.namespaceId),
          created.map((h) => str(h.amount)),
          created.map(settled),
          created.map((h) => h.status),
          created.map((h) => h.expiresAt),
          changed.map((h) => h.jobId),
          changed.map((h) => h.status),
          changed.map(settled),
          e.map((x) => x.kind),
          e.map((x) => x.namespaceId),
          e.map((x) => x.nodeAddress),
          e.map((x) => x.jobId),
          e.map((x) => str(x.amount)),
          e.map((x) => x.idemKey),
          e.map((x) => x.expiresAt),
        ],
      });
      // Defence in depth: every hold we close must still have been pending (see loadBatch on snapshots).
      if (w.rows[0]?.closed !== changed.length) {
        throw new AppError('store_unavailable', 'a hold changed under a concurrent batch; re-run', {
          sqlstate: 'hold_race',
        });
      }
    }
    // Sorted: two batches that first credit the same new nodes must insert them in the same order (no deadlock).
    const nodes = [...s.nodes.entries()]
      .filter(([, n]) => n.deltaEarned !== 0n || n.deltaPaidOut > 0n)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    if (nodes.length > 0) {
      // Deltas, not absolute values: a node row may not exist yet (and so could not be locked) when the batch
      // began. Earnings only (the job path): one upsert. With payouts: ensure the rows exist first, so that the
      // CHECK (paid_out <= earned) sees only real totals (it would refuse a proposed new row of a payout).
      const values = [
        nodes.map(([a]) => a),
        nodes.map(([, n]) => str(n.deltaEarned)),
        nodes.map(([, n]) => str(n.deltaPaidOut)),
        s.now,
      ];
      // A reversal or forfeit (negative delta) takes the second path too: its proposed row would fail the CHECK.
      if (nodes.every(([, n]) => n.deltaPaidOut === 0n && n.deltaEarned >= 0n)) {
        await tx.query({
          name: 'ledger_node_earnings',
          text: `insert into node_balances (node_address, earned, updated_at)
                 select a, e, $4 from unnest($1::text[], $2::int8[], $3::int8[]) as v(a, e, p)
                 on conflict (node_address) do update
                   set earned = node_balances.earned + excluded.earned, updated_at = excluded.updated_at`,
          values,
        });
      } else {
        await tx.query(
          'insert into node_balances (node_address) select unnest($1::text[]) on conflict (node_address) do nothing',
          [values[0]],
        );
        await tx.query(
          `update node_balances b set earned = b.earned + v.e, paid_out = b.paid_out + v.p, updated_at = $4
           from unnest($1::text[], $2::int8[], $3::int8[]) as v(a, e, p) where b.node_address = v.a`,
          values,
        );
      }
    }
  }

  async getBalance(db: Queryable, namespaceId: string): Promise<BalanceView | undefined> {
    const r = await db.query<{ available: bigint; reserved: bigint; bonus_available: bigint }>(
      'select available, reserved, bonus_available from credit_balances where namespace_id = $1',
      [namespaceId],
    );
    const row = r.rows[0];
    return row
      ? { namespaceId, available: row.available, reserved: row.reserved, bonusAvailable: row.bonus_available }
      : undefined;
  }

  async getHold(
    db: Queryable,
    namespaceId: string,
    jobId: string,
  ): Promise<Omit<Hold, 'isNew' | 'dirty'> | undefined> {
    const r = await db.query<{
      job_id: string;
      namespace_id: string;
      amount: bigint;
      settled_amount: bigint | null;
      status: HoldStatus;
      expires_at: Date;
    }>(
      'select job_id, namespace_id, amount, settled_amount, status, expires_at from credit_holds where job_id = $1 and namespace_id = $2',
      [jobId, namespaceId],
    );
    const row = r.rows[0];
    return row
      ? {
          jobId: row.job_id,
          namespaceId: row.namespace_id,
          amount: row.amount,
          settledAmount: row.settled_amount,
          status: row.status,
          expiresAt: row.expires_at,
        }
      : undefined;
  }

  async findExpiredHolds(
    db: Queryable,
    now: Date,
    limit: number,
  ): Promise<Array<{ jobId: string; namespaceId: string }>> {
    const r = await db.query<{ job_id: string; namespace_id: string }>(
      `select job_id, namespace_id from credit_holds where status = 'pending' and expires_at <= $1 order by expires_at limit $2`,
      [now, limit],
    );
    return r.rows.map((x) => ({ jobId: x.job_id, namespaceId: x.namespace_id }));
  }

  async findExpiredBonuses(
    db: Queryable,
    now: Date,
    limit: number,
  ): Promise<Array<{ namespaceId: string; bonusIdemKey: string; grant: bigint }>> {
    const r = await db.query<{ namespace_id: string; idem_key: string; amount: bigint }>(
      `select b.namespace_id, b.idem_key, b.amount from ledger_entries b
       where b.kind = 'bonus' and b.expires_at <= $1
         and not exists (select 1 from ledger_entries x where x.idem_key = 'bonus_expire:' || b.idem_key)
       order by b.expires_at limit $2`,
      [now, limit],
    );
    return r.rows.map((x) => ({ namespaceId: x.namespace_id, bonusIdemKey: x.idem_key, grant: x.amount }));
  }

  /** Recomputes every balance and hold from the entries and lists each disagreement. */
  async findMismatches(db: Queryable): Promise<LedgerMismatch[]> {
    const out: LedgerMismatch[] = [];
    const ns = await db.query<{
      id: string;
      available: string;
      reserved: string;
      d_available: string;
      d_reserved: string;
    }>(`
      with d as (
        select namespace_id,
          coalesce(sum(case when kind in ('topup','bonus','release','void','hold_expire','refund') then amount
                            when kind in ('reserve','bonus_expire','storage_charge') then -amount else 0 end), 0) as available,
          coalesce(sum(case when kind = 'reserve' then amount
                            when kind in ('settle','release','void','hold_expire') then -amount else 0 end), 0) as reserved
        from ledger_entries where namespace_id is not null group by namespace_id)
      select coalesce(b.namespace_id, d.namespace_id)::text as id,
             coalesce(b.available, 0)::text as available, coalesce(b.reserved, 0)::text as reserved,
             coalesce(d.available, 0)::text as d_available, coalesce(d.reserved, 0)::text as d_reserved
      from credit_balances b full join d on d.namespace_id = b.namespace_id
      where coalesce(b.available, 0) <> coalesce(d.available, 0) or coalesce(b.reserved, 0) <> coalesce(d.reserved, 0)`);
    for (const r of ns.rows) {
      if (r.available !== r.d_available)
        out.push({
          scope: 'namespace',
          id: r.id,
          field: 'available',
          stored: r.available,
          derived: r.d_available,
        });
      if (r.reserved !== r.d_reserved)
        out.push({
          scope: 'namespace',
          id: r.id,
          field: 'reserved',
          stored: r.reserved,
          derived: r.d_reserved,
        });
    }
    // Reserved must equal the sum of pending holds.
    const pend = await db.query<{ id: string; reserved: string; pending: string }>(`
      select b.namespace_id::text as id, b.reserved::text as reserved, coalesce(p.s, 0)::text as pending
      from credit_balances b left join (select namespace_id, sum(amount) as s from credit_holds where status = 'pending' group by namespace_id) p
        on p.namespace_id = b.namespace_id
      where b.reserved <> coalesce(p.s, 0)`);
    for (const r of pend.rows)
      out.push({
        scope: 'namespace',
        id: r.id,
        field: 'reserved_vs_pending_holds',
        stored: r.reserved,
        derived: r.pending,
      });
    // Each hold agrees with its own entries: reserve = amount; closing entries sum to amount and match its status.
    const holds = await db.query<{ id: string; field: string; stored: string; derived: string }>(`
      with e as (
        select job_id,
          coalesce(sum(amount) filter (where kind = 'reserve'), 0) as reserved,
          coalesce(sum(amount) filter (where kind = 'settle'), 0) as settled,
          coalesce(sum(amount) filter (where kind in ('settle','release','void','hold_expire')), 0) as closed,
          count(*) filter (where kind = 'settle') as n_settle
        from ledger_entries where job_id is not null and namespace_id is not null group by job_id)
      select h.job_id::text as id, 'reserve_entry' as field, h.amount::text as stored, coalesce(e.reserved, 0)::text as derived
        from credit_holds h left join e on e.job_id = h.job_id where h.amount <> coalesce(e.reserved, 0)
      union all
      select h.job_id::text, 'closing_entries', h.amount::text, coalesce(e.closed, 0)::text
        from credit_holds h left join e on e.job_id = h.job_id where h.status <> 'pending' and h.amount <> coalesce(e.closed, 0)
      union all
      select h.job_id::text, 'settled_amount', coalesce(h.settled_amount, 0)::text, coalesce(e.settled, 0)::text
        from credit_holds h left join e on e.job_id = h.job_id where coalesce(h.settled_amount, 0) <> coalesce(e.settled, 0)
      union all
      -- A refund gives back exactly the settled charge of a posted hold of its own namespace.
      select r.job_id::text, 'refund', r.amount::text, coalesce(h.status || ' ' || h.settled_amount::text, 'no hold')
        from ledger_entries r left join credit_holds h on h.job_id = r.job_id and h.namespace_id = r.namespace_id
        where r.kind = 'refund' and (h.job_id is null or h.status <> 'posted' or h.settled_amount <> r.amount)`);
    for (const r of holds.rows) out.push({ scope: 'hold', ...r });
    // Entries agree with their hold: every job entry has a hold in the same namespace, and the closing entry
    // matches the hold's status (posted: settle; voided: void; expired: hold_expire; pending: none).
    const shape = await db.query<{ id: string; field: string; stored: string; derived: string }>(`
      with e as (
        select job_id, bool_or(kind = 'settle') as s, bool_or(kind = 'void') as v, bool_or(kind = 'hold_expire') as x,
               min(namespace_id::text) as ns_min, max(namespace_id::text) as ns_max
        from ledger_entries where job_id is not null and namespace_id is not null group by job_id)
      select e.job_id::text as id, 'hold_row' as field, 'missing' as stored, 'entries exist' as derived
        from e left join credit_holds h on h.job_id = e.job_id where h.job_id is null
      union all
      select h.job_id::text, 'entry_namespace', h.namespace_id::text, e.ns_min || '/' || e.ns_max
        from credit_holds h join e on e.job_id = h.job_id where e.ns_min <> h.namespace_id::text or e.ns_max <> h.namespace_id::text
      union all
      select h.job_id::text, 'status', h.status,
             case when e.s then 'posted' when e.v then 'voided' when e.x then 'expired' else 'pending' end
        from credit_holds h left join e on e.job_id = h.job_id
        where h.status <> case when e.s then 'posted' when e.v then 'voided' when e.x then 'expired' else 'pending' end`);
    for (const r of shape.rows) out.push({ scope: 'hold', ...r });
    const nodes = await db.query<{
      id: string;
      earned: string;
      paid_out: string;
      d_earned: string;
      d_paid: string;
    }>(`
      with d as (
        select node_address,
               coalesce(sum(amount) filter (where kind in ('earning', 'network_expense')), 0)
                 - coalesce(sum(amount) filter (where kind in ('earning_reversal', 'forfeit')), 0) as earned,
               coalesce(sum(amount) filter (where kind = 'payout'), 0) as paid
        from ledger_entries where node_address is not null group by node_address)
      select coalesce(b.node_address, d.node_address) as id, coalesce(b.earned, 0)::text as earned, coalesce(b.paid_out, 0)::text as paid_out,
             coalesce(d.earned, 0)::text as d_earned, coalesce(d.paid, 0)::text as d_paid
      from node_balances b full join d on d.node_address = b.node_address
      where coalesce(b.earned, 0) <> coalesce(d.earned, 0) or coalesce(b.paid_out, 0) <> coalesce(d.paid, 0)`);
    for (const r of nodes.rows) {
      if (r.earned !== r.d_earned)
        out.push({ scope: 'node', id: r.id, field: 'earned', stored: r.earned, derived: r.d_earned });
      if (r.paid_out !== r.d_paid)
        out.push({ scope: 'node', id: r.id, field: 'paid_out', stored: r.paid_out, derived: r.d_paid });
    }
    return out;
  }
}
