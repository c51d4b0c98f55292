// Test data factories over the real services.
import { AccountsService, type Namespace } from '../src/modules/accounts/index.js';
import type { Pool } from '../src/stores/postgres/pool.js';
import { baseConfig, uniqueName } from './harness.js';

export async function createNamespaces(pool: Pool, count: number): Promise<Namespace[]> {
  const accounts = new AccountsService({ pool, apiKeyPepper: baseConfig.API_KEY_PEPPER });
  const account = await accounts.createAccount({ email: `${uniqueName('acct')}@example.test` });
  const out: Namespace[] = [];
  for (let i = 0; i < count; i += 1)
    out.push(await accounts.createNamespace({ accountId: account.id, name: `ns-${i}` }));
  return out;
}

/** Bulk variant for benchmarks: one statement per table. */
export async function createNamespacesBulk(pool: Pool, count: number): Promise<string[]> {
  const acct = await pool.query<{ id: string }>('insert into accounts (email) values ($1) returning id', [
    `${uniqueName('bulk')}@example.test`,
  ]);
  const r = await pool.query<{ id: string }>(
    `insert into namespaces (account_id, name) select $1, 'ns-' || g from generate_series(1, $2) g returning id`,
    [acct.rows[0]!.id, count],
  );
  const ids = r.rows.map((x) => x.id);
  await pool.query('insert into credit_balances (namespace_id) select unnest($1::uuid[])', [ids]);
  return ids;
}

export const CREDIT = 1_000_000n; // micro-credits per credit
