-- The credit ledger: append-only entries (integer micro-credits), two-phase holds, and balances derived from entries.

create table credit_balances (
  namespace_id uuid primary key references namespaces(id),
  available bigint not null default 0 check (available >= 0),
  reserved bigint not null default 0 check (reserved >= 0),
  -- Part of `available` that came from bonuses and is consumed first by charges; expiring bonuses remove at most this.
  bonus_available bigint not null default 0 check (bonus_available >= 0),
  updated_at timestamptz not null default now()
);

create table node_balances (
  node_address text primary key,
  earned bigint not null default 0 check (earned >= 0),
  paid_out bigint not null default 0 check (paid_out >= 0),
  updated_at timestamptz not null default now(),
  check (paid_out <= earned)
);

-- One hold per job (two-phase transfer: pending -> posted | voided | expired).
create table credit_holds (
  job_id uuid primary key,
  namespace_id uuid not null references namespaces(id),
  amount bigint not null check (amount > 0),
  settled_amount bigint check (settled_amount >= 0),
  status text not null default 'pending' check (status in ('pending', 'posted', 'voided', 'expired')),
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  closed_at timestamptz,
  check (settled_amount is null or settled_amount <= amount)
);
create index credit_holds_pending_idx on credit_holds (expires_at) where status = 'pending';
create index credit_holds_namespace_idx on credit_holds (namespace_id, created_at);

create table ledger_entries (
  id bigint generated always as identity primary key,
  kind text not null check (kind in (
    'topup', 'bonus', 'bonus_expire', 'reserve', 'settle', 'release', 'void', 'hold_expire',
    'storage_charge', 'earning', 'payout')),
  namespace_id uuid references namespaces(id),
  node_address text,
  job_id uuid,
  amount bigint not null check (amount >= 0),
  idem_key text not null unique,
  expires_at timestamptz,
  created_at timestamptz not null default now(),
  check ((namespace_id is null) <> (node_address is null))
);
create index ledger_entries_namespace_idx on ledger_entries (namespace_id, id) where namespace_id is not null;
create index ledger_entries_node_idx on ledger_entries (node_address, id) where node_address is not null;
create index ledger_entries_bonus_expiry_idx on ledger_entries (expires_at) where kind = 'bonus';

-- Entries are append-only: refuse UPDATE and DELETE at the database level.
create or replace function ledger_entries_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'ledger_entries is append-only (% refused)', tg_op using errcode = 'P0001';
end $$;
create trigger ledger_entries_no_update before update or delete on ledger_entries
  for each row execute function ledger_entries_append_only();
