// The audited account actions the Admin API (any account) and the Gate API (the token's own account) share:
// each change commits with its audit entry in one transaction where the service takes one, and records its actor.
import type { AppendInput, AuditService } from '../audit/index.js';
import { AppError } from '../../platform/errors.js';
import { withTransaction, type Pool, type PoolClient } from '../../stores/postgres/pool.js';
import type { AccountsService, CreatedApiKey } from './accounts.service.js';
import type { Namespace } from './accounts.repository.js';
import type { ApiKeyCache } from './key-cache.js';

/** The transaction an audited change runs in (what the accounts service's writes take as `tx`). */
export type Tx = PoolClient;

export class AccountActions {
  constructor(
    private readonly deps: {
      pool: Pool;
      accounts: AccountsService;
      keyCache: Pick<ApiKeyCache, 'revoke'>;
      audit: Pick<AuditService, 'append'>;
    },
  ) {}

  /** Runs a change and appends its audit entry in the same transaction (both commit, or neither). */
  audited<T>(entry: (result: T) => AppendInput, change: (tx: PoolClient) => Promise<T>): Promise<T> {
    return withTransaction(this.deps.pool, async (tx) => {
      const result = await change(tx);
      await this.deps.audit.append(entry(result), tx);
      return result;
    });
  }

  /** The namespace, refused as not found when it belongs to another account (no existence oracle). */
  async requireNamespace(namespaceId: string, accountId?: string): Promise<Namespace> {
    const ns = await this.deps.accounts.findNamespace(namespaceId);
    if (!ns || (accountId !== undefined && ns.accountId !== accountId))
      throw new AppError('namespace_not_found', `no namespace ${namespaceId}`);
    return ns;
  }

  createNamespace(actor: string, accountId: string, name: string): Promise<Namespace> {
    return this.audited(
      (n: Namespace) => ({
        actor,
        action: 'namespace.create',
        target: `namespace:${n.id}`,
        body: { accountId, name },
      }),
      (tx) => this.deps.accounts.createNamespace({ accountId, name }, tx),
    );
  }

  createApiKey(
    actor: string,
    namespaceId: string,
    k: { name: string; rateLimitPerS?: number | undefined; burst?: number | undefined },
  ): Promise<CreatedApiKey> {
    return this.audited(
      (c: CreatedApiKey) => ({
        actor,
        action: 'api_key.create',
        target: `api_key:${c.key.id}`,
        // Never the secret: the public prefix identifies the key.
        body: {
          namespaceId,
          name: k.name,
          prefix: c.key.prefix,
          rateLimitPerS: k.rateLimitPerS ?? null,
          burst: k.burst ?? null,
        },
      }),
      (tx) =>
        this.deps.accounts.createApiKey(
          {
            namespaceId,
            name: k.name,
            ...(k.rateLimitPerS !== undefined ? { rateLimitPerS: k.rateLimitPerS } : {}),
            ...(k.burst !== undefined ? { burst: k.burst } : {}),
          },
          tx,
        ),
    );
  }

  /** Revokes in PostgreSQL and every process's cache (key cache), then records it. */
  async revokeApiKey(actor: string, namespaceId: string, keyId: string): Promise<void> {
    await this.deps.keyCache.revoke(namespaceId, keyId);
    await this.deps.audit.append({
      actor,
      action: 'api_key.revoke',
      target: `api_key:${keyId}`,
      body: { namespaceId },
    });
  }
}
