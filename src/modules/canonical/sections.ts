// What a snapshot holds: the authoritative tables, in restore (foreign-key) order, with their canonical columns.
import type { Column, ColumnType, TableSpec } from './table-codec.js';

const cols = (spec: string): Column[] =>
  spec
    .trim()
    .split(/\s*,\s*/)
    .map((pair) => {
      const [name, type] = pair.split(/\s+/);
      return { name: name!, type: type as ColumnType };
    });

export const jobRollupsSpec: TableSpec = {
  name: 'job_rollups',
  columns: cols(`day date, namespace_id uuid, model text, node_address text, status text, jobs int8,
    tokens_in int8, tokens_out int8, credits int8, latency_count int8, latency_sum_ms int8, latency_buckets int8[],
    price_version int`),
  orderBy: ['day', 'namespace_id', 'model', 'node_address', 'status', 'price_version'],
};

export const ledgerRollupsSpec: TableSpec = {
  name: 'ledger_rollups',
  columns: cols('day date, owner text, kind text, entries int8, amount int8'),
  orderBy: ['day', 'owner', 'kind'],
};

export const rollupPeriodsSpec: TableSpec = {
  name: 'rollup_periods',
  columns: cols('day date, job_groups int8, ledger_groups int8, jobs int8, hash bytea, rolled_at ts'),
  orderBy: ['day'],
};

export const balancesSpec: TableSpec = {
  name: 'credit_balances',
  columns: cols('namespace_id uuid, available int8, reserved int8, bonus_available int8, updated_at ts'),
  orderBy: ['namespace_id'],
};

/** Every table a snapshot carries, parents before children (restore inserts in this order). */
export const snapshotSections: TableSpec[] = [
  {
    name: 'accounts',
    columns: cols('id uuid, email text, wallet_address text, created_at ts'),
    orderBy: ['id'],
  },
  {
    name: 'namespaces',
    // retention_grace_until (issue 18) is last: a snapshot written before it restores with the grace unset.
    columns: cols(`id uuid, account_id uuid, name text, retention_days int, retention_plan text,
      extended_retention_until ts, created_at ts, retention_grace_until ts`),
    orderBy: ['id'],
  },
  {
    name: 'api_keys',
    columns: cols(`id uuid, namespace_id uuid, prefix text, secret_hash bytea, name text, status text,
      rate_limit_per_s int, burst int, expires_at ts, last_used_at ts, created_at ts, revoked_at ts`),
    orderBy: ['id'],
  },
  {
    name: 'nodes',
    columns: cols(`address text, account_id uuid, environment text, status text, region text, gpu_model text,
      gpu_memory_mb int, hardware json, bound_at ts, created_at ts, updated_at ts`),
    orderBy: ['address'],
  },
  {
    name: 'node_flags',
    columns: cols('node_address text, flag text, reason text, set_by text, set_at ts, expires_at ts'),
    orderBy: ['node_address', 'flag'],
  },
  {
    name: 'subclouds',
    columns: cols('id uuid, name text, environment text, policy json, created_at ts'),
    orderBy: ['id'],
  },
  {
    name: 'subcloud_members',
    columns: cols('subcloud_id uuid, node_address text, added_at ts'),
    orderBy: ['subcloud_id', 'node_address'],
  },
  {
    name: 'network_config_versions',
    columns: cols('version int, digest text, body json, signature text, author text, created_at ts'),
    orderBy: ['version'],
  },
  balancesSpec,
  {
    name: 'node_balances',
    columns: cols('node_address text, earned int8, paid_out int8, updated_at ts'),
    orderBy: ['node_address'],
  },
  {
    name: 'credit_holds',
    columns:
      cols(`job_id uuid, namespace_id uuid, amount int8, settled_amount int8, status text, expires_at ts,
      created_at ts, closed_at ts`),
    orderBy: ['job_id'],
  },
  {
    name: 'ledger_entries',
    columns: cols(`id int8, kind text, namespace_id uuid, node_address text, job_id uuid, amount int8,
      idem_key text, expires_at ts, created_at ts`),
    orderBy: ['id'],
    identity: true,
  },
  {
    name: 'reward_epochs',
    columns: cols('id int, starts_at ts, ends_at ts, status text'),
    orderBy: ['id'],
  },
  {
    name: 'contribution_points',
    columns: cols('epoch_id int, node_address text, account_id uuid, jobs_completed int, points int8'),
    orderBy: ['epoch_id', 'node_address'],
  },
  jobRollupsSpec,
  ledgerRollupsSpec,
  rollupPeriodsSpec,
  {
    name: 'audit_log',
    columns: cols(
      `seq int8, at ts, actor text, action text, target text, body json, prev_hash bytea, hash bytea`,
    ),
    orderBy: ['seq'],
  },
  // What a launched network needs besides (issue 18), appended so that earlier sections keep their order. Account
  // tokens travel as their HMAC only (as stored); the Space plan's receipts, charges, events and changes; reputation.
  {
    name: 'account_tokens',
    columns: cols(
      'id uuid, account_id uuid, prefix text, secret_hash bytea, created_at ts, last_used_at ts, revoked_at ts',
    ),
    orderBy: ['id'],
  },
  {
    name: 'retention_runs',
    columns:
      cols(`id uuid, namespace_id uuid, collection text, cutoff ts, status text, target text, doc_count int8,
      deleted_count int8, range_from ts, range_to ts, files json, manifest_sha256 text, started_at ts, exported_at ts,
      finished_at ts`),
    orderBy: ['id'],
  },
  {
    name: 'storage_charge_days',
    columns: cols(
      'namespace_id uuid, day date, plan text, bytes int8, amount int8, status text, created_at ts',
    ),
    orderBy: ['namespace_id', 'day'],
  },
  {
    name: 'retention_plan_events',
    columns: cols('id int8, namespace_id uuid, kind text, body json, at ts'),
    orderBy: ['id'],
    identity: true,
  },
  {
    name: 'space_plan_changes',
    columns: cols(`id uuid, namespace_id uuid, idem_key text, action text, from_plan text, to_plan text,
      retention_days int, day date, charged_micro int8, actor text, created_at ts`),
    orderBy: ['id'],
  },
  {
    name: 'node_reputation',
    columns:
      cols(`node_address text, as_of ts, attempts int8, ok float8, fail_error float8, fail_timeout float8,
      fail_disconnect float8, latency_sum_ms float8, latency_n float8, tokens float8, token_seconds float8,
      valid_ok float8, valid_n float8, score int, probation bool, updated_at ts`),
    orderBy: ['node_address'],
  },
  {
    // Spot-check verdicts (issue 16): who was checked, against whom, and who was found wrong.
    name: 'qc_checks',
    columns: cols(`job_id uuid, namespace_id uuid, model text, environment text, rule text, verdict text,
      node_a text, node_b text, node_c text, blind_job_id uuid, tie_job_id uuid, wrong_node text,
      similarity float8, decided_at ts`),
    orderBy: ['job_id'],
  },
];

/** Live view exported by a freeze: jobs in flight (no detail history) besides the registry and balances. */
export const activeJobsSpec: TableSpec = {
  name: 'jobs',
  columns:
    cols(`id uuid, namespace_id uuid, api_key_id uuid, model text, mode text, priority text, environment text,
    subcloud_id uuid, status text, node_address text, attempts int, tokens_in int, tokens_out int, max_cost int8,
    cost int8, latency_ms int, created_at ts, dispatched_at ts, finished_at ts, price_version int`),
  orderBy: ['created_at', 'id'],
};
