// The Gate API under /gate/v1, for account-scoped tokens (Authorization: Bearer rtya_…): the account-level
// actions of the Admin API restricted to the token's own account (another account's namespace is not found),
// and node binding by a signed node message. Every change is audited with actor 'account:<id>'.
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod, ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../../config/config.js';
import type { AccountsService } from '../../modules/accounts/index.js';
import type { NodesModule } from '../../modules/nodes/index.js';
import { signedNodeMessageSchema, verifyNodeMessage, type NonceStore } from '../../modules/network/index.js';
import { AppError } from '../../platform/errors.js';
import { bearerOf } from '../auth.js';
import {
  accountView,
  auditedTx,
  createApiKey,
  createNamespace,
  requireNamespace,
  revokeApiKey,
  type AccountRouteDeps,
} from './account-actions.js';
import { namespaceRecordsRoutes, type RecordsRouteDeps } from './admin-records.routes.js';
import { namespaceSpaceRoutes, type SpaceRouteDeps } from './space-plans.routes.js';
import {
  adminSecurity as security,
  createKeyBody,
  createNamespaceBody,
  idParams,
  keyParams,
  renderBalance,
} from './gate-admin.contracts.js';
import { environmentSchema as environment, uuidSchema as uuid } from '../../config/vocabulary.js';

const tags = ['gate'];

/** The body of a "node.bind" message: the node asks to be bound to this account. */
export const nodeBindBody = z
  .object({
    accountId: uuid,
    environment,
    region: z.string().min(1).max(64).optional(),
    gpuModel: z.string().min(1).max(100).optional(),
    gpuMemoryMb: z.number().int().min(0).max(10_000_000).optional(),
  })
  .strict();

/** What the Gate API uses. */
export interface GateDeps extends Omit<AccountRouteDeps, 'records' | 'accounts'> {
  records: RecordsRouteDeps['records'] & SpaceRouteDeps['records'];
  config: Pick<Config, 'NODE_MESSAGE_MAX_SKEW_MS'>;
  accounts: AccountRouteDeps['accounts'] & Pick<AccountsService, 'verifyAccountToken'>;
  nodes: { admin: Pick<NodesModule['admin'], 'bindNode'> };
  /** Node message nonces (a binding message is single-use). */
  nonces: NonceStore;
}

export function gateRoutes(b: GateDeps): FastifyPluginAsyncZod {
  const nonces = b.nonces;
  return async (app) => {
    await app.register(
      async (plain) => {
        const scope = plain.withTypeProvider<ZodTypeProvider>();
        const accountOfReq = new WeakMap<FastifyRequest, string>();
        scope.addHook('onRequest', async (req) => {
          const token = bearerOf(req);
          if (!token)
            throw new AppError('unauthorized', 'missing account token: send Authorization: Bearer <token>');
          accountOfReq.set(req, (await b.accounts.verifyAccountToken(token)).accountId);
        });
        const accountOf = (req: FastifyRequest): string => {
          const id = accountOfReq.get(req);
          if (!id) throw new AppError('unauthorized', 'invalid account token');
          return id;
        };
        const actorOf = (req: FastifyRequest) => `account:${accountOf(req)}`;

        scope.get(
          '/account',
          { schema: { tags, security, summary: "The token's account with its namespaces and balances" } },
          async (req) => accountView(b, accountOf(req)),
        );

        scope.post(
          '/namespaces',
          { schema: { tags, security, summary: 'Create a namespace', body: createNamespaceBody } },
          async (req, reply) =>
            reply.status(201).send(await createNamespace(b, actorOf(req), accountOf(req), req.body.name)),
        );

        scope.post(
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
            const ns = await requireNamespace(b, req.params.id, accountOf(req));
            return reply.status(201).send(await createApiKey(b, actorOf(req), ns.id, req.body));
          },
        );

        scope.post(
          '/namespaces/:id/keys/:keyId/revoke',
          { schema: { tags, security, summary: 'Revoke an API key', params: keyParams } },
          async (req) => {
            const ns = await requireNamespace(b, req.params.id, accountOf(req));
            return revokeApiKey(b, actorOf(req), ns.id, req.params.keyId);
          },
        );

        scope.get(
          '/namespaces/:id/balance',
          { schema: { tags, security, summary: 'Balance of a namespace (micro-credits)', params: idParams } },
          async (req) => {
            const ns = await requireNamespace(b, req.params.id, accountOf(req));
            return { namespaceId: ns.id, ...renderBalance(await b.ledger.getBalance(ns.id)) };
          },
        );

        await scope.register(namespaceRecordsRoutes(b, { tags, accountOf: async (req) => accountOf(req) }));
        await scope.register(
          namespaceSpaceRoutes(b, { tags, accountOf: async (req) => accountOf(req), actorOf }),
        );

        scope.post(
          '/nodes/bind',
          {
            schema: {
              tags,
              security,
              summary: 'Bind a node to this account with a signed "node.bind" message',
              body: z.object({ message: signedNodeMessageSchema }).strict(),
              response: { 201: z.object({ address: z.string(), accountId: z.string() }) },
            },
          },
          async (req, reply) => {
            const accountId = accountOf(req);
            const m = req.body.message;
            // Cheap checks first, so that a refused request claims no nonce and writes nothing.
            if (m.type !== 'node.bind')
              throw new AppError('invalid_request', `message type must be "node.bind", not "${m.type}"`);
            const parsed = nodeBindBody.safeParse(m.body);
            if (!parsed.success)
              throw new AppError(
                'invalid_request',
                `invalid node.bind body: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`,
              );
            const bind = parsed.data;
            if (bind.accountId !== accountId)
              throw new AppError(
                'forbidden',
                "the message binds the node to another account than the token's",
              );
            await verifyNodeMessage(m, {
              nowMs: Date.now(),
              maxSkewMs: b.config.NODE_MESSAGE_MAX_SKEW_MS,
              nonces,
            });
            const node = {
              address: m.node,
              environment: bind.environment,
              accountId,
              ...(bind.region !== undefined ? { region: bind.region } : {}),
              ...(bind.gpuModel !== undefined ? { gpuModel: bind.gpuModel } : {}),
              ...(bind.gpuMemoryMb !== undefined ? { gpuMemoryMb: bind.gpuMemoryMb } : {}),
            };
            await auditedTx(
              b,
              () => ({
                actor: `account:${accountId}`,
                action: 'node.bind',
                target: `node:${m.node}`,
                body: { ...node, nonce: m.nonce, ts: m.ts },
              }),
              (tx) => b.nodes.admin.bindNode(node, tx),
            );
            return reply.status(201).send({ address: m.node, accountId });
          },
        );
      },
      { prefix: '/gate/v1' },
    );
  };
}
