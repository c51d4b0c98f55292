-- Archive: hashed daily rollups of jobs and ledger activity, snapshot records, pruned partitions, append-only audit log.

-- Finished jobs of one day, per namespace x model x node x status. node_address '' = no node.
create table job_rollups (
  day date not null,
  namespace_id uuid not null,
  model text not null,
  node_address text not null,
  status text not null,
  jobs bigint not null,
  tokens_in bigint not null,
  tokens_out bigint not null,
  credits bigint not null,
  latency_count bigint not null,
  latency_sum_ms bigint not null,
  -- Counts per latency bucket (upper bounds in rollup.ts; the last bucket is open-ended).
  latency_buckets bigint[] not null,
  primary key (day, namespace_id, model, node_address, status)
);

-- Ledger activity of one day per owner (namespace id or node address) and entry kind.
create table ledger_rollups (
  day date not null,
  owner text not null,
  kind text not null,
  entries bigint not null,
  amount bigint not null,
  primary key (day, owner, kind)
);

-- One row per rolled-up day, written in the same transaction as its rows: its presence means "complete".
-- hash = RFC 6962 Merkle root over the day's canonical job rollup rows, then its ledger rollup rows.
create table rollup_periods (
  day date primary key,
  job_groups bigint not null,
  ledger_groups bigint not null,
  jobs bigint not null,
  hash bytea not null,
  rolled_at timestamptz not null default now()
);

create table snapshots (
  seq bigint primary key,
  cid text not null unique,
  prev_cid text references snapshots(cid),
  kind text not null default 'snapshot' check (kind in ('snapshot')),
  size_bytes bigint not null,
  location text not null,
  rollup_from date,
  rollup_to date,
  -- The audit log head the snapshot carries: anchors `audit verify` against a truncated tail.
  audit_seq bigint,
  audit_hash bytea,
  created_at timestamptz not null,
  verified_at timestamptz,
  check ((seq = 1) = (prev_cid is null))
);

create table pruned_job_partitions (
  partition text primary key,
  range_from timestamptz not null,
  range_to timestamptz not null,
  jobs bigint not null,
  tokens bigint not null,
  credits bigint not null,
  snapshot_cid text not null references snapshots(cid),
  pruned_at timestamptz not null default now()
);

-- Ledger entries are append-only and time-ordered: a BRIN index makes per-day rollup scans cheap.
create index ledger_entries_created_brin on ledger_entries using brin (created_at);

-- The audit log is append-only like the ledger.
create or replace function audit_log_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'audit_log is append-only (% refused)', tg_op using errcode = 'P0001';
end $$;
create trigger audit_log_no_update before update or delete on audit_log
  for each row execute function audit_log_append_only();
