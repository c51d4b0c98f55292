// Accounts, namespaces and API keys: creation, key verification by prefix + hash, revocation.
import { AppError } from '../../platform/errors.js';
import { translatePgError, withTransaction, type Pool } from '../../stores/postgres/pool.js';
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

export class AccountsService {
  private readonly pool: Pool;
  private readonly pepper: string;
  private readonly repo = new AccountsRepository();

  constructor(deps: { pool: Pool; apiKeyPepper: string }) {
    this.pool = deps.pool;
    this.pepper = deps.apiKeyPepper;
  }

  async createAccount(a: { email?: string; walletAddress?: string }): Promise<Account> {
    if (!a.email && !a.walletAddress)
      throw new AppError('invalid_request', 'an account needs an email or a wallet address');
    if (a.walletAddress && !/^0x[0-9a-f]{40}$/.test(a.walletAddress)) {
      throw new AppError(
        'invalid_request',
        'walletAddress must be a lower-case 0x-prefixed 20-byte hex address',
      );
    }
    try {
      return await this.repo.insertAccount(this.pool, a);
    } catch (err) {
      throw translatePgError(err);
    }
  }

  async createNamespace(n: { accountId: string; name: string; retentionDays?: number }): Promise<Namespace> {
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(n.name)) {
      throw new AppError(
        'invalid_request',
        'namespace name: 1-63 of a-z 0-9 _ -, starting with a letter or digit',
      );
    }
    return withTransaction(this.pool, (tx) => this.repo.insertNamespace(tx, n));
  }

  async findNamespace(namespaceId: string): Promise<Namespace | undefined> {
    return this.repo.findNamespace(this.pool, namespaceId);
  }

  async createApiKey(k: {
    namespaceId: string;
    name?: string;
    rateLimitPerS?: number;
    burst?: number;
    expiresAt?: Date;
  }): Promise<CreatedApiKey> {
    const generated = generateApiKey(this.pepper);
    try {
      const key = await this.repo.insertApiKey(this.pool, {
        ...k,
        prefix: generated.prefix,
        secretHash: generated.secretHash,
      });
      return { key, plaintext: generated.plaintext };
    } catch (err) {
      throw translatePgError(err);
    }
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
