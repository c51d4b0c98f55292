// SQL for account-scoped tokens (Gate API) and the account reads the Gate and Admin APIs need.
import type { Queryable } from '../../stores/postgres/pool.js';
import type { Account } from './accounts.repository.js';

export interface AccountTokenRecord {
  id: string;
  accountId: string;
  prefix: string;
  secretHash: Buffer;
  createdAt: Date;
  revokedAt: Date | null;
}

type TokenRow = {
  id: string;
  account_id: string;
  prefix: string;
  secret_hash: Buffer;
  created_at: Date;
  revoked_at: Date | null;
};
const toToken = (r: TokenRow): AccountTokenRecord => ({
  id: r.id,
  accountId: r.account_id,
  prefix: r.prefix,
  secretHash: r.secret_hash,
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
});
const tokenColumns = 'id, account_id, prefix, secret_hash, created_at, revoked_at';

export class AccountTokensRepository {
  async insertToken(
    db: Queryable,
    t: { accountId: string; prefix: string; secretHash: Buffer },
  ): Promise<AccountTokenRecord> {
    const r = await db.query<TokenRow>(
      `insert into account_tokens (account_id, prefix, secret_hash) values ($1, $2, $3) returning ${tokenColumns}`,
      [t.accountId, t.prefix, t.secretHash],
    );
    return toToken(r.rows[0]!);
  }

  async findTokenByPrefix(db: Queryable, prefix: string): Promise<AccountTokenRecord | undefined> {
    const r = await db.query<TokenRow>(`select ${tokenColumns} from account_tokens where prefix = $1`, [
      prefix,
    ]);
    return r.rows[0] ? toToken(r.rows[0]) : undefined;
  }

  async revokeToken(db: Queryable, accountId: string, tokenId: string): Promise<boolean> {
    const r = await db.query(
      'update account_tokens set revoked_at = now() where id = $1 and account_id = $2 and revoked_at is null',
      [tokenId, accountId],
    );
    return r.rowCount === 1;
  }

  async touchToken(db: Queryable, tokenId: string): Promise<void> {
    await db.query(
      `update account_tokens set last_used_at = now() where id = $1 and (last_used_at is null or last_used_at < now() - interval '1 minute')`,
      [tokenId],
    );
  }

  async findAccount(db: Queryable, accountId: string): Promise<Account | undefined> {
    const r = await db.query<{
      id: string;
      email: string | null;
      wallet_address: string | null;
      created_at: Date;
    }>('select id, email, wallet_address, created_at from accounts where id = $1', [accountId]);
    const row = r.rows[0];
    return row
      ? { id: row.id, email: row.email, walletAddress: row.wallet_address, createdAt: row.created_at }
      : undefined;
  }
}
