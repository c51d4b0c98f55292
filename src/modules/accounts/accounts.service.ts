// Accounts, namespaces and API keys: creation, key verification by prefix + hash, revocation.
import { isAddress } from '../../config/vocabulary.js';
import { AppError } from '../../platform/errors.js';
import { withTransaction, type Pool, type PoolClient } from '../../stores/postgres/pool.js';
import { generateAccountToken, parseAccountToken } from './account-token.js';
import { AccountTokensRepository, type AccountTokenRecord } from './account-tokens.repository.js';
import {
  AccountsRepository,
  type Account,
  type ApiKeyRecord,
  type Namespace,
} from './accounts.repository.js';
import { generateApiKey, parseApiKey, secretMatches } from './api-key.js';

export interface CreatedApiKey {
  key: ApiKeyRecord;
  /** Returned once; only its hash is stored. */
  plaintext: string;
}

export interface CreatedAccountToken {
  token: AccountTokenRecord;
  /** Returned once; only its hash is stored. */
  plaintext: string;
}

/** `tx`: the caller's transaction, so that a change and its audit entry commit together. */
export class AccountsService {
  private readonly pool: Pool;
  private readonly pepper: string;
  private readonly repo = new AccountsRepository();
  private readonly tokens = new AccountTokensRepository();

  constructor(deps: { pool: Pool; apiKeyPepper: string }) {
    this.pool = deps.pool;
    this.pepper = deps.apiKeyPepper;
  }

  async createAccount(a: { email?: string; walletAddress?: string }, tx?: PoolClient): Promise<Account> {
    if (!a.email && !a.walletAddress)
      throw new AppError('invalid_request', 'an account needs an email or a wallet address');
    if (a.walletAddress && !isAddress(a.walletAddress)) {
      throw new AppError(
        'invalid_request',
        'walletAddress must be a lower-case 0x-prefixed 20-byte hex address',
      );
    }
    return this.repo.insertAccount(tx ?? this.pool, a);
  }

  async createNamespace(
    n: { accountId: string; name: string; retentionDays?: number },
    tx?: PoolClient,
  ): Promise<Namespace> {
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(n.name)) {
      throw new AppError(
        'invalid_request',
        'namespace name: 1-63 of a-z 0-9 _ -, starting with a letter or digit',
      );
    }
    return tx
      ? this.repo.insertNamespace(tx, n)
      : withTransaction(this.pool, (c) => this.repo.insertNamespace(c, n));
  }

  async findNamespace(namespaceId: string): Promise<Namespace | undefined> {
    return this.repo.findNamespace(this.pool, namespaceId);
  }

  async findAccount(accountId: string): Promise<Account | undefined> {
    return this.tokens.findAccount(this.pool, accountId);
  }

  async listNamespaces(accountId: string): Promise<Namespace[]> {
    return this.repo.listNamespaces(this.pool, accountId);
  }

  /** A new account-scoped token (Gate API); the plaintext is returned once, only its hash is stored. */
  async createAccountToken(accountId: string, tx?: PoolClient): Promise<CreatedAccountToken> {
    const generated = generateAccountToken(this.pepper);
    const token = await this.tokens.insertToken(tx ?? this.pool, {
      accountId,
      prefix: generated.prefix,
      secretHash: generated.secretHash,
    });
    return { token, plaintext: generated.plaintext };
  }

  /** The account of a presented token, or `unauthorized` (one error for every failure: no token oracle). */
  async verifyAccountToken(plaintext: string): Promise<{ accountId: string; tokenId: string }> {
    const parsed = parseAccountToken(plaintext);
    const refuse = () => new AppError('unauthorized', 'invalid account token');
    if (!parsed) throw refuse();
    const t = await this.tokens.findTokenByPrefix(this.pool, parsed.prefix);
    if (!t || !secretMatches(parsed.secret, this.pepper, t.secretHash) || t.revokedAt) throw refuse();
    await this.tokens.touchToken(this.pool, t.id);
    return { accountId: t.accountId, tokenId: t.id };
  }

  async revokeAccountToken(accountId: string, tokenId: string, tx?: PoolClient): Promise<void> {
    const done = await this.tokens.revokeToken(tx ?? this.pool, accountId, tokenId);
    if (!done) throw new AppError('not_found', `no active token ${tokenId} of account ${accountId}`);
  }

  async createApiKey(
    k: {
      namespaceId: string;
      name?: string;
      rateLimitPerS?: number;
      burst?: number;
      expiresAt?: Date;
    },
    tx?: PoolClient,
  ): Promise<CreatedApiKey> {
    const generated = generateApiKey(this.pepper);
    const key = await this.repo.insertApiKey(tx ?? this.pool, {
      ...k,
      prefix: generated.prefix,
      secretHash: generated.secretHash,
    });
    return { key, plaintext: generated.plaintext };
  }

  /** Returns the active key for a presented secret, or throws `unauthorized` (same error for every failure). */
  async verifyApiKey(plaintext: string, now = new Date()): Promise<ApiKeyRecord> {
    const parsed = parseApiKey(plaintext);
    const refuse = () => new AppError('unauthorized', 'invalid API key');
    if (!parsed) throw refuse();
    const key = await this.repo.findApiKeyByPrefix(this.pool, parsed.prefix);
    if (!key || !secretMatches(parsed.secret, this.pepper, key.secretHash)) throw refuse();
    if (key.status !== 'active' || (key.expiresAt && key.expiresAt <= now)) throw refuse();
    await this.repo.touchApiKey(this.pool, key.id);
    return key;
  }

  async revokeApiKey(namespaceId: string, keyId: string): Promise<void> {
    const done = await this.repo.revokeApiKey(this.pool, namespaceId, keyId);
    if (!done) throw new AppError('not_found', `no active API key ${keyId} in namespace ${namespaceId}`);
  }
}
