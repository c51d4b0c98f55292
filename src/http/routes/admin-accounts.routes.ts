// Admin API: accounts, account tokens, namespaces, top-ups and API keys of any account.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Account, CreatedAccountToken } from '../../modules/accounts/index.js';
import { AppError } from '../../platform/errors.js';
import type { AccountsService } from '../../modules/accounts/index.js';
import type { AuditService } from '../../modules/audit/index.js';
import type { LedgerService } from '../../modules/credits/index.js';
import {
  accountView,
  auditedTx,
  createApiKey,
  createNamespace,
  requireNamespace,
  revokeApiKey,
  type AccountRouteDeps,
} from './account-actions.js';
import {
  adminSecurity as security,
  createAccountBody,
  createKeyBody,
  createNamespaceBody,
  idParams,
  keyParams,
  renderAccount,
  renderBalance,
  topUpBody,
} from './gate-admin.contracts.js';

const tags = ['admin'];
const actor = 'admin';

/** The reply of POST /accounts: a node simulator and operators' tooling rely on `account.id` and `token`. */
const createdAccountReply = z.object({
  account: z.object({
    id: z.string(),
    email: z.string().nullable(),
    walletAddress: z.string().nullable(),
    createdAt: z.string(),
  }),
  token: z.string().describe('the account token, shown once'),
  tokenId: z.string(),
});

/** What the Admin API's account routes use. */
export interface AdminAccountsDeps extends AccountRouteDeps {
  accounts: AccountRouteDeps['accounts'] &
    Pick<AccountsService, 'createAccount' | 'createAccountToken' | 'findAccount' | 'revokeAccountToken'>;
  audit: Pick<AuditService, 'append'>;
  ledger: Pick<LedgerService, 'getBalance' | 'topUp'>;
}

async function requireAccount(b: AdminAccountsDeps, accountId: string): Promise<Account> {
  const a = await b.accounts.findAccount(accountId);
  if (!a) throw new AppError('not_found', `no account ${accountId}`);
  return a;
}

export function adminAccountsRoutes(b: AdminAccountsDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/accounts',
      {
        schema: {
          tags,
          security,
          summary: 'Create an account and its first account token (shown once)',
          body: createAccountBody,
          response: { 201: createdAccountReply },
        },
      },
      async (req, reply) => {
        const body = req.body;
        const created = await auditedTx(
          b,
          (r: { account: Account; token: CreatedAccountToken }) => ({
            actor,
            action: 'account.create',
            target: `account:${r.account.id}`,
            body: {
              email: body.email ?? null,
              walletAddress: body.walletAddress ?? null,
              tokenId: r.token.token.id,
            },
          }),
          async (tx) => {
            const account = await b.accounts.createAccount(
              {
                ...(body.email !== undefined ? { email: body.email } : {}),
                ...(body.walletAddress !== undefined ? { walletAddress: body.walletAddress } : {}),
              },
              tx,
            );
            return { account, token: await b.accounts.createAccountToken(account.id, tx) };
          },
        );
        return reply.status(201).send({
          account: renderAccount(created.account),
          token: created.token.plaintext,
          tokenId: created.token.token.id,
        });
      },
    );

    app.post(
      '/accounts/:id/tokens',
      { schema: { tags, security, summary: 'Issue a new account token (shown once)', params: idParams } },
      async (req, reply) => {
        const accountId = req.params.id;
        await requireAccount(b, accountId);
        const t = await auditedTx(
          b,
          (r: CreatedAccountToken) => ({
            actor,
            action: 'account_token.create',
            target: `account:${accountId}`,
            body: { tokenId: r.token.id },
          }),
          (tx) => b.accounts.createAccountToken(accountId, tx),
        );
        return reply.status(201).send({ id: t.token.id, accountId, token: t.plaintext });
      },
    );

    app.post(
      '/accounts/:id/tokens/:tokenId/revoke',
      {
        schema: {
          tags,
          security,
          summary: 'Revoke an account token',
          params: z.object({ id: idParams.shape.id, tokenId: idParams.shape.id }),
        },
      },
      async (req) => {
        const { id: accountId, tokenId } = req.params;
        await auditedTx(
          b,
          () => ({
            actor,
            action: 'account_token.revoke',
            target: `account:${accountId}`,
            body: { tokenId },
          }),
          (tx) => b.accounts.revokeAccountToken(accountId, tokenId, tx),
        );
        return { id: tokenId, accountId, revoked: true };
      },
    );

    app.get(
      '/accounts/:id',
      {
        schema: { tags, security, summary: 'An account with its namespaces and balances', params: idParams },
      },
      async (req) => accountView(b, req.params.id),
    );

    app.post(
      '/accounts/:id/namespaces',
      { schema: { tags, security, params: idParams, body: createNamespaceBody } },
      async (req, reply) => {
        await requireAccount(b, req.params.id);
        return reply.status(201).send(await createNamespace(b, actor, req.params.id, req.body.name));
      },
    );

    app.post(
      '/namespaces/:id/topups',
      {
        schema: {
          tags,
          security,
          summary: 'Top up a namespace (idempotent by key; a reused key with another amount → 409)',
          params: idParams,
          body: topUpBody,
        },
      },
      async (req, reply) => {
        const ns = await requireNamespace(b, req.params.id);
        const amount = BigInt(req.body.amountMicro);
        const r = await b.ledger.topUp(ns.id, amount, req.body.idempotencyKey);
        // A replay changes nothing, so it adds no audit entry.
        if (!r.replayed)
          await b.audit.append({
            actor,
            action: 'namespace.topup',
            target: `namespace:${ns.id}`,
            body: { amountMicro: amount.toString(), idempotencyKey: req.body.idempotencyKey },
          });
        return reply.status(r.replayed ? 200 : 201).send({
          namespaceId: ns.id,
          amountMicro: r.amount.toString(),
          replayed: r.replayed,
          balance: renderBalance(await b.ledger.getBalance(ns.id)),
        });
      },
    );

    app.post(
      '/namespaces/:id/keys',
      {
        schema: {
          tags,
          security,
          summary: 'Create an API key (the secret is shown once)',
          params: idParams,
          body: createKeyBody,
        },
      },
      async (req, reply) => {
        const ns = await requireNamespace(b, req.params.id);
        return reply.status(201).send(await createApiKey(b, actor, ns.id, req.body));
      },
    );

    app.post(
      '/namespaces/:id/keys/:keyId/revoke',
      {
        schema: {
          tags,
          security,
          summary: 'Revoke an API key (every process refuses it at once)',
          params: keyParams,
          response: {
            200: z.object({ id: z.string(), namespaceId: z.string(), status: z.literal('revoked') }),
          },
        },
      },
      async (req) => {
        const ns = await requireNamespace(b, req.params.id);
        return revokeApiKey(b, actor, ns.id, req.params.keyId);
      },
    );
  };
}
