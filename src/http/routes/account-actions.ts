// The account-level actions the Admin API (any account) and the Gate API (the token's own account) share:
// each change commits with its audit entry where the service takes a transaction, and records its actor.
import type { FastifyReply } from 'fastify';
import type { CreatedApiKey, Namespace } from '../../modules/accounts/index.js';
import type { AppendInput } from '../../modules/audit/index.js';
import { AppError } from '../../platform/errors.js';
import type { Backbone } from '../../app/compose.js';
import { withTransaction, type PoolClient } from '../../stores/postgres/pool.js';
import {
  renderAccount,
  renderKey,
  renderNamespace,
  type ExportQuery,
  type JobsQuery,
} from './gate-admin.contracts.js';

/** Runs a change and appends its audit entry in the same transaction (both commit, or neither). */
export function auditedTx<T>(
  b: Backbone,
  entry: (result: T) => AppendInput,
  change: (tx: PoolClient) => Promise<T>,
): Promise<T> {
  return withTransaction(b.pool, async (tx) => {
    const result = await change(tx);
    await b.audit.append(entry(result), tx);
    return result;
  });
}

/** The namespace, refused as not found when it belongs to another account (no existence oracle). */
export async function requireNamespace(
  b: Backbone,
  namespaceId: string,
  accountId?: string,
): Promise<Namespace> {
  const ns = await b.accounts.findNamespace(namespaceId);
  if (!ns || (accountId !== undefined && ns.accountId !== accountId))
    throw new AppError('namespace_not_found', `no namespace ${namespaceId}`);
  return ns;
}

export async function accountView(b: Backbone, accountId: string) {
  const account = await b.accounts.findAccount(accountId);
  if (!account) throw new AppError('not_found', `no account ${accountId}`);
  const namespaces = await b.accounts.listNamespaces(accountId);
  const balances = await Promise.all(namespaces.map((n) => b.ledger.getBalance(n.id)));
  return {
    account: renderAccount(account),
    namespaces: namespaces.map((n, i) => renderNamespace(n, balances[i] ?? undefined)),
  };
}

export async function createNamespace(b: Backbone, actor: string, accountId: string, name: string) {
  const ns = await auditedTx(
    b,
    (n: Namespace) => ({
      actor,
      action: 'namespace.create',
      target: `namespace:${n.id}`,
      body: { accountId, name },
    }),
    (tx) => b.accounts.createNamespace({ accountId, name }, tx),
  );
  return renderNamespace(ns, await b.ledger.getBalance(ns.id));
}

export async function createApiKey(
  b: Backbone,
  actor: string,
  namespaceId: string,
  k: { name: string; rateLimitPerS?: number | undefined; burst?: number | undefined },
) {
  const created = await auditedTx(
    b,
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
      b.accounts.createApiKey(
        {
          namespaceId,
          name: k.name,
          ...(k.rateLimitPerS !== undefined ? { rateLimitPerS: k.rateLimitPerS } : {}),
          ...(k.burst !== undefined ? { burst: k.burst } : {}),
        },
        tx,
      ),
  );
  return { ...renderKey(created.key), secret: created.plaintext };
}

/** Revokes in PostgreSQL and every process's cache (key cache), then records it. */
export async function revokeApiKey(b: Backbone, actor: string, namespaceId: string, keyId: string) {
  await b.keyCache.revoke(namespaceId, keyId);
  await b.audit.append({
    actor,
    action: 'api_key.revoke',
    target: `api_key:${keyId}`,
    body: { namespaceId },
  });
  return { id: keyId, namespaceId, status: 'revoked' as const };
}

function jobFilterOf(q: Omit<JobsQuery, 'limit' | 'cursor'>) {
  return {
    ...(q.model !== undefined ? { model: q.model } : {}),
    ...(q.status !== undefined ? { status: q.status } : {}),
    ...(q.apiKeyId !== undefined ? { apiKeyId: q.apiKeyId } : {}),
    ...(q.from !== undefined ? { from: q.from } : {}),
    ...(q.to !== undefined ? { to: q.to } : {}),
  };
}

export async function listJobs(b: Backbone, namespaceId: string, q: JobsQuery) {
  const page = await b.records.query.listJobs(namespaceId, jobFilterOf(q), {
    ...(q.limit !== undefined ? { limit: q.limit } : {}),
    ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
  });
  return { data: page.items, nextCursor: page.nextCursor };
}

export async function exportJobs(b: Backbone, reply: FastifyReply, namespaceId: string, q: ExportQuery) {
  const { format, ...filter } = q;
  const stream = await b.records.query.exportJobs(namespaceId, jobFilterOf(filter), format);
  return reply
    .header(
      'content-type',
      format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
    )
    .header('content-disposition', `attachment; filename="jobs-${namespaceId}.${format}"`)
    .send(stream);
}
