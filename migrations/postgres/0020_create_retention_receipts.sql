-- Records retention: one row per export→verify→delete run (the receipt once done), the daily storage charge
-- decisions of the Space plan, plan events, and the grace deadline of a namespace whose credits ran out.

create table retention_runs (
  id uuid primary key,
  namespace_id uuid not null references namespaces(id),
  collection text not null,
  -- Everything with ts < cutoff (and only what the verified export lists) is deleted by this run.
  cutoff timestamptz not null,
  status text not null default 'exporting' check (status in ('exporting', 'exported', 'done')),
  target text not null,
  doc_count bigint check (doc_count >= 0),
  deleted_count bigint check (deleted_count >= 0),
  range_from timestamptz,
  range_to timestamptz,
  -- [{ name, sha256, count, bytes }] of the verified export; manifest_sha256 is the manifest file's hash.
  files jsonb not null default '[]',
  manifest_sha256 text,
  started_at timestamptz not null default now(),
  exported_at timestamptz,
  finished_at timestamptz
);
-- At most one unfinished run per namespace and collection: a crashed run is resumed, never duplicated.
create unique index retention_runs_open_idx on retention_runs (namespace_id, collection) where status <> 'done';
create index retention_runs_namespace_idx on retention_runs (namespace_id, started_at);

-- The storage charge decided for a namespace and day; the ledger call always uses this stored amount, so a
-- second run on the same day replays the same idempotent entry.
create table storage_charge_days (
  namespace_id uuid not null references namespaces(id),
  day date not null,
  plan text not null,
  bytes bigint not null check (bytes >= 0),
  amount bigint not null check (amount >= 0),
  status text not null default 'pending' check (status in ('pending', 'charged', 'unpaid', 'free')),
  created_at timestamptz not null default now(),
  primary key (namespace_id, day)
);

create table retention_plan_events (
  id bigint generated always as identity primary key,
  namespace_id uuid not null references namespaces(id),
  kind text not null check (kind in ('grace_started', 'grace_cleared', 'plan_lapsed', 'plan_set')),
  body jsonb not null default '{}',
  at timestamptz not null default now()
);
create index retention_plan_events_namespace_idx on retention_plan_events (namespace_id, id);

alter table namespaces add column retention_grace_until timestamptz;
