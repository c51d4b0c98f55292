// SQL for accounts, namespaces and API keys; returns domain types.
import type { Queryable } from '../../stores/postgres/pool.js';

export interface Account {
  id: string;
  email: string | null;
  walletAddress: string | null;
  createdAt: Date;
}

export interface Namespace {
  id: string;
  accountId: string;
  name: string;
  retentionDays: number;
  retentionPlan: string;
  createdAt: Date;
}

export interface ApiKeyRecord {
  id: string;
  namespaceId: string;
  prefix: string;
  secretHash: Buffer;
  name: string | null;
  status: 'active' | 'revoked';
  rateLimitPerS: number | null;
  burst: number | null;
  expiresAt: Date | null;
  createdAt: Date;
}

const nsColumns = 'id, account_id, name, retention_days, retention_plan, created_at';
type NsRow = {
  id: string;
  account_id: string;
  name: string;
  retention_days: number;
  retention_plan: string;
  created_at: Date;
};
const toNamespace = (r: NsRow): Namespace => ({
  id: r.id,
  accountId: r.account_id,
  name: r.name,
  retentionDays: r.retention_days,
  retentionPlan: r.retention_plan,
  createdAt: r.created_at,
});

type KeyRow = {
  id: string;
  namespace_id: string;
  prefix: string;
  secret_hash: Buffer;
  name: string | null;
  status: 'active' | 'revoked';
  rate_limit_per_s: number | null;
  burst: number | null;
  expires_at: Date | null;
  created_at: Date;
};
const toKey = (r: KeyRow): ApiKeyRecord => ({
  id: r.id,
  namespaceId: r.namespace_id,
  prefix: r.prefix,
  secretHash: r.secret_hash,
  name: r.name,
  status: r.status,
  rateLimitPerS: r.rate_limit_per_s,
  burst: r.burst,
  expiresAt: r.expires_at,
  createdAt: r.created_at,
});

export class AccountsRepository {
  async insertAccount(db: Queryable, a: { email?: string; walletAddress?: string }): Promise<Account> {
    const r = await db.query<{
      id: string;
      email: string | null;
      wallet_address: string | null;
      created_at: Date;
    }>(
      'insert into accounts (email, wallet_address) values ($1, $2) returning id, email, wallet_address, created_at',
      [a.email ?? null, a.walletAddress ?? null],
    );
    const row = r.rows[0]!;
    return { id: row.id, email: row.email, walletAddress: row.wallet_address, createdAt: row.created_at };
  }

  /** Creates the namespace and its (empty) credit balance in the caller's transaction. */
  async insertNamespace(
    db: Queryable,
    n: { accountId: string; name: string; retentionDays?: number },
  ): Promise<Namespace> {
    const r = await db.query<NsRow>(
      `insert into namespaces (account_id, name, retention_days) values ($1, $2, coalesce($3, 7)) returning ${nsColumns}`,
      [n.accountId, n.name, n.retentionDays ?? null],
    );
    const ns = toNamespace(r.rows[0]!);
    await db.query('insert into credit_balances (namespace_id) values ($1)', [ns.id]);
    return ns;
  }

  async findNamespace(db: Queryable, namespaceId: string): Promise<Namespace | undefined> {
    const r = await db.query<NsRow>(`select ${nsColumns} from namespaces where id = $1`, [namespaceId]);
    return r.rows[0] ? toNamespace(r.rows[0]) : undefined;
  }

  async listNamespaces(db: Queryable, accountId: string): Promise<Namespace[]> {
    const r = await db.query<NsRow>(
      `select ${nsColumns} from namespaces where account_id = $1 order by created_at, id`,
      [accountId],
    );
    return r.rows.map(toNamespace);
  }

  async insertApiKey(
    db: Queryable,
    k: {
      namespaceId: string;
      prefix: string;
      secretHash: Buffer;
      name?: string;
      rateLimitPerS?: number;
      burst?: number;
      expiresAt?: Date;
    },
  ): Promise<ApiKeyRecord> {
    const r = await db.query<KeyRow>(
      `insert into api_keys (namespace_id, prefix, secret_hash, name, rate_limit_per_s, burst, expires_at)
       values ($1, $2, $3, $4, $5, $6, $7) returning *`,
      [
        k.namespaceId,
        k.prefix,
        k.secretHash,
        k.name ?? null,
        k.rateLimitPerS ?? null,
        k.burst ?? null,
        k.expiresAt ?? null,
      ],
    );
    return toKey(r.rows[0]!);
  }

  async findApiKeyByPrefix(db: Queryable, prefix: string): Promise<ApiKeyRecord | undefined> {
    const r = await db.query<KeyRow>('select * from api_keys where prefix = $1', [prefix]);
    return r.rows[0] ? toKey(r.rows[0]) : undefined;
  }

  async revokeApiKey(db: Queryable, namespaceId: string, keyId: string): Promise<boolean> {
    const r = await db.query(
      `update api_keys set status = 'revoked', revoked_at = now() where id = $1 and namespace_id = $2 and status = 'active'`,
      [keyId, namespaceId],
    );
    return r.rowCount === 1;
  }

  async touchApiKey(db: Queryable, keyId: string): Promise<void> {
    await db.query(
      `update api_keys set last_used_at = now() where id = $1 and (last_used_at is null or last_used_at < now() - interval '1 minute')`,
      [keyId],
    );
  }
}
