// The account-level routes' shared steps for the Admin API (any account) and the Gate API (the token's own
// account): the audited actions themselves are the accounts module's (AccountActions); here they are rendered.
import type { FastifyReply } from 'fastify';
import type { AccountActions, AccountsService, Namespace, Tx } from '../../modules/accounts/index.js';
import type { AppendInput } from '../../modules/audit/index.js';
import type { LedgerService } from '../../modules/credits/index.js';
import type { RecordsQueryService } from '../../modules/records/index.js';
import { AppError } from '../../platform/errors.js';
import {
  renderAccount,
  renderKey,
  renderNamespace,
  type ExportQuery,
  type JobsQuery,
} from './gate-admin.contracts.js';

/** What the account routes of the Admin and Gate APIs use. */
export interface AccountRouteDeps {
  accounts: Pick<AccountsService, 'findAccount' | 'listNamespaces'>;
  actions: AccountActions;
  ledger: Pick<LedgerService, 'getBalance'>;
  records: { query: Pick<RecordsQueryService, 'listJobs' | 'exportJobs'> };
}

/** Runs a change and appends its audit entry in the same transaction (both commit, or neither). */
export function auditedTx<T>(
  b: Pick<AccountRouteDeps, 'actions'>,
  entry: (result: T) => AppendInput,
  change: (tx: Tx) => Promise<T>,
): Promise<T> {
  return b.actions.audited(entry, change);
}

/** The namespace, refused as not found when it belongs to another account (no existence oracle). */
export function requireNamespace(
  b: Pick<AccountRouteDeps, 'actions'>,
  namespaceId: string,
  accountId?: string,
): Promise<Namespace> {
  return b.actions.requireNamespace(namespaceId, accountId);
}

export async function accountView(b: AccountRouteDeps, accountId: string) {
  const account = await b.accounts.findAccount(accountId);
  if (!account) throw new AppError('not_found', `no account ${accountId}`);
  const namespaces = await b.accounts.listNamespaces(accountId);
  const balances = await Promise.all(namespaces.map((n) => b.ledger.getBalance(n.id)));
  return {
    account: renderAccount(account),
    namespaces: namespaces.map((n, i) => renderNamespace(n, balances[i] ?? undefined)),
  };
}

export async function createNamespace(b: AccountRouteDeps, actor: string, accountId: string, name: string) {
  const ns = await b.actions.createNamespace(actor, accountId, name);
  return renderNamespace(ns, await b.ledger.getBalance(ns.id));
}

export async function createApiKey(
  b: AccountRouteDeps,
  actor: string,
  namespaceId: string,
  k: { name: string; rateLimitPerS?: number | undefined; burst?: number | undefined },
) {
  const created = await b.actions.createApiKey(actor, namespaceId, k);
  return { ...renderKey(created.key), secret: created.plaintext };
}

/** Revokes in PostgreSQL and every process's cache (key cache), then records it. */
export async function revokeApiKey(b: AccountRouteDeps, actor: string, namespaceId: string, keyId: string) {
  await b.actions.revokeApiKey(actor, namespaceId, keyId);
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

export async function listJobs(b: Pick<AccountRouteDeps, 'records'>, namespaceId: string, q: JobsQuery) {
  const page = await b.records.query.listJobs(namespaceId, jobFilterOf(q), {
    ...(q.limit !== undefined ? { limit: q.limit } : {}),
    ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
  });
  return { data: page.items, nextCursor: page.nextCursor };
}

export async function exportJobs(
  b: Pick<AccountRouteDeps, 'records'>,
  reply: FastifyReply,
  namespaceId: string,
  q: ExportQuery,
) {
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
