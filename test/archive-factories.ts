// Bulk data for archive tests and benchmarks: jobs spread over days, ledger entries, nodes, Subclouds, config.
import type { Pool } from '../src/stores/postgres/pool.js';

/**
 * Inserts `count` jobs with created_at spread evenly over [from, to), one statement. Statuses cycle through
 * succeeded/failed/expired/cancelled (every 7th job stays 'dispatched' when `withUnfinished`).
 */
export async function insertJobs(
  pool: Pool,
  opts: {
    count: number;
    from: Date;
    to: Date;
    namespaceIds: string[];
    nodes?: string[];
    withUnfinished?: boolean;
  },
): Promise<void> {
  await pool.query('select ensure_job_partitions($1, $2)', [opts.from, opts.to]);
  const nodes = opts.nodes ?? ['0x' + '1'.repeat(40), '0x' + '2'.repeat(40)];
  await pool.query(
    `insert into jobs (id, namespace_id, model, mode, priority, status, node_address, tokens_in, tokens_out, max_cost,
       cost, latency_ms, created_at, finished_at)
     select gen_random_uuid(), ($3::uuid[])[1 + g % cardinality($3::uuid[])], 'model-' || (g % 3), 'sync', 'bulk',
       case when $6::bool and g % 7 = 0 then 'dispatched'
            else (array['succeeded','failed','expired','cancelled'])[1 + g % 4] end,
       case when g % 5 = 0 then null else ($4::text[])[1 + g % cardinality($4::text[])] end,
       10 + g % 50, 20 + g % 90, 1000, case when g % 4 = 0 then 100 + g % 900 else null end,
       case when g % 6 = 0 then null else (g * 37) % 40000 end,
       $1::timestamptz + (($2::timestamptz - $1::timestamptz) * (g::float8 / $5)),
       $1::timestamptz + (($2::timestamptz - $1::timestamptz) * (g::float8 / $5::int)) + interval '2 seconds'
     from generate_series(0, $5::int - 1) g`,
    [opts.from, opts.to, opts.namespaceIds, nodes, opts.count, opts.withUnfinished ?? false],
  );
}

/**
 * Top-up entries (and matching balances) spread over [from, to); keeps `ledger verify` consistent. `clustered` gives
 * each namespace a run of consecutive entries (one burst of activity) instead of interleaving all namespaces.
 */
export async function insertTopups(
  pool: Pool,
  opts: { count: number; from: Date; to: Date; namespaceIds: string[]; tag: string; clustered?: boolean },
): Promise<void> {
  await pool.query(
    `insert into ledger_entries (kind, namespace_id, amount, idem_key, created_at)
     select 'topup',
       ($3::uuid[])[1 + case when $6::bool then (g::int8 * cardinality($3::uuid[]) / $4::int)::int
                             else g % cardinality($3::uuid[]) end],
       1000 + g % 977, 'topup:' || $5::text || ':' || g,
       $1::timestamptz + (($2::timestamptz - $1::timestamptz) * (g::float8 / $4::int))
     from generate_series(0, $4::int - 1) g`,
    [opts.from, opts.to, opts.namespaceIds, opts.count, opts.tag, opts.clustered ?? false],
  );
  await pool.query(
    `update credit_balances b set available = b.available + s.total
     from (select namespace_id, sum(amount)::int8 as total from ledger_entries where idem_key like $1 group by 1) s
     where s.namespace_id = b.namespace_id`,
    [`topup:${opts.tag}:%`],
  );
}

/** A small registry: nodes bound to the first namespace's account, a Subcloud with members, flags, config versions. */
export async function insertRegistry(pool: Pool, accountId: string): Promise<void> {
  await pool.query(
    `insert into nodes (address, account_id, environment, status, region, gpu_model, gpu_memory_mb, hardware)
     select '0x' || lpad(to_hex(g), 40, '0'), $1, 'testnet', 'active', 'eu', 'A100', 81920,
       jsonb_build_object('cores', g, 'tags', jsonb_build_array('x', g))
     from generate_series(1, 5) g`,
    [accountId],
  );
  await pool.query(
    `insert into subclouds (name, environment, policy) values ('sc-a', 'testnet', '{"min_gpu_mb": 40000}')`,
  );
  await pool.query(
    `insert into subcloud_members (subcloud_id, node_address)
     select s.id, n.address from subclouds s, nodes n where s.name = 'sc-a' and (n.address like '%1' or n.address like '%2')
     on conflict do nothing`,
  );
  await pool.query(
    `insert into node_flags (node_address, flag, reason, set_by) values ('0x' || lpad('3', 40, '0'), 'pause', 'test', 'admin')`,
  );
  await pool.query(
    `insert into network_config_versions (version, digest, body, signature, author)
     values (1, 'sha256:aa', '{"heartbeat_interval_ms": 5000}', '0xsig1', 'admin'),
            (2, 'sha256:bb', '{"heartbeat_interval_ms": 3000, "x": [1.5, null]}', '0xsig2', 'admin')`,
  );
}
