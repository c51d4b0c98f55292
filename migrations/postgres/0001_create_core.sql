-- Authoritative registry: accounts, namespaces, API keys, nodes, Subclouds, network config, jobs, rewards, audit log.

create table accounts (
  id uuid primary key default gen_random_uuid(),
  email text unique,
  wallet_address text unique check (wallet_address ~ '^0x[0-9a-f]{40}$'),
  created_at timestamptz not null default now(),
  check (email is not null or wallet_address is not null)
);

create table namespaces (
  id uuid primary key default gen_random_uuid(),
  account_id uuid not null references accounts(id),
  name text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  retention_days integer not null default 7 check (retention_days between 1 and 3650),
  retention_plan text not null default 'default',
  extended_retention_until timestamptz,
  created_at timestamptz not null default now(),
  unique (account_id, name)
);

-- The secret is never stored: only a public prefix (lookup) and a peppered SHA-256 of the secret.
create table api_keys (
  id uuid primary key default gen_random_uuid(),
  namespace_id uuid not null references namespaces(id),
  prefix text not null unique,
  secret_hash bytea not null,
  name text,
  status text not null default 'active' check (status in ('active', 'revoked')),
  rate_limit_per_s integer check (rate_limit_per_s > 0),
  burst integer check (burst > 0),
  expires_at timestamptz,
  last_used_at timestamptz,
  created_at timestamptz not null default now(),
  revoked_at timestamptz
);
create index api_keys_namespace_idx on api_keys (namespace_id);

create table nodes (
  address text primary key check (address ~ '^0x[0-9a-f]{40}$'),
  account_id uuid references accounts(id),
  environment text not null check (environment in ('testnet', 'mainnet')),
  status text not null default 'registered' check (status in ('registered', 'active', 'retired')),
  region text,
  gpu_model text,
  gpu_memory_mb integer check (gpu_memory_mb >= 0),
  hardware jsonb not null default '{}',
  bound_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index nodes_account_idx on nodes (account_id);
create index nodes_filter_idx on nodes (environment, status, region);

-- Moderation flags (source of truth; mirrored into Redis).
create table node_flags (
  node_address text not null references nodes(address),
  flag text not null check (flag in ('pause', 'freeze', 'shadow_ban')),
  reason text,
  set_by text not null,
  set_at timestamptz not null default now(),
  expires_at timestamptz,
  primary key (node_address, flag)
);

create table subclouds (
  id uuid primary key default gen_random_uuid(),
  name text not null unique,
  environment text not null check (environment in ('testnet', 'mainnet')),
  policy jsonb not null default '{}',
  created_at timestamptz not null default now()
);

create table subcloud_members (
  subcloud_id uuid not null references subclouds(id),
  node_address text not null references nodes(address),
  added_at timestamptz not null default now(),
  primary key (subcloud_id, node_address)
);
create index subcloud_members_node_idx on subcloud_members (node_address);

create table network_config_versions (
  version integer primary key,
  digest text not null unique,
  body jsonb not null,
  signature text not null,
  author text not null,
  created_at timestamptz not null default now()
);

-- Job metadata only (payloads live in MongoDB). Range-partitioned by month so that old detail
-- can be dropped cheaply once rolled up and archived.
create table jobs (
  id uuid not null,
  namespace_id uuid not null,
  api_key_id uuid,
  model text not null,
  mode text not null check (mode in ('sync', 'polling', 'stream')),
  priority text not null check (priority in ('urgent', 'bulk', 'test')),
  environment text not null default 'mainnet' check (environment in ('testnet', 'mainnet')),
  subcloud_id uuid,
  status text not null check (status in ('queued', 'dispatched', 'succeeded', 'failed', 'expired', 'cancelled')),
  node_address text,
  attempts integer not null default 0,
  tokens_in integer not null default 0,
  tokens_out integer not null default 0,
  max_cost bigint not null check (max_cost >= 0),
  cost bigint check (cost >= 0),
  latency_ms integer,
  created_at timestamptz not null,
  dispatched_at timestamptz,
  finished_at timestamptz,
  primary key (id, created_at)
) partition by range (created_at);
create table jobs_default partition of jobs default;
create index jobs_namespace_time_idx on jobs (namespace_id, created_at desc);
create index jobs_status_idx on jobs (status, created_at) where status in ('queued', 'dispatched');
create index jobs_node_idx on jobs (node_address, created_at);

-- Creates the monthly partitions covering [from, to); idempotent.
create or replace function ensure_job_partitions(from_ts timestamptz, to_ts timestamptz) returns void
language plpgsql as $$
declare
  m timestamptz := date_trunc('month', from_ts);
  part text;
begin
  while m < to_ts loop
    part := format('jobs_%s', to_char(m, 'YYYYMM'));
    if to_regclass(part) is null then
      execute format('create table %I partition of jobs for values from (%L) to (%L)', part, m, m + interval '1 month');
    end if;
    m := m + interval '1 month';
  end loop;
end $$;
select ensure_job_partitions(now() - interval '1 month', now() + interval '3 months');

create table reward_epochs (
  id integer primary key,
  starts_at timestamptz not null,
  ends_at timestamptz not null,
  status text not null default 'open' check (status in ('open', 'closed', 'paid')),
  check (ends_at > starts_at)
);

create table contribution_points (
  epoch_id integer not null references reward_epochs(id),
  node_address text not null,
  account_id uuid,
  jobs_completed integer not null default 0,
  points bigint not null default 0 check (points >= 0),
  primary key (epoch_id, node_address)
);

-- Append-only, hash-chained admin and config history: hash = sha256(prev_hash || canonical entry).
create table audit_log (
  seq bigint primary key,
  at timestamptz not null default now(),
  actor text not null,
  action text not null,
  target text,
  body jsonb not null default '{}',
  prev_hash bytea not null,
  hash bytea not null unique
);
