// Admin API: node moderation flags (pause, freeze, shadow-ban, with an optional cooldown), a node's registry
// entry with its live view, and Subclouds with their members.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { nodeFlags } from '../../modules/nodes/index.js';
import { AppError } from '../../platform/errors.js';
import type { AuditService } from '../../modules/audit/index.js';
import type { NodesModule } from '../../modules/nodes/index.js';
import { adminSecurity as security } from './gate-admin.contracts.js';
import {
  addressSchema as address,
  environmentSchema as environment,
  uuidSchema as uuid,
} from '../../config/vocabulary.js';

const tags = ['admin'];
const actor = 'admin';
const addressParams = z.object({ address });

/** What the Admin API's node routes use. */
export interface AdminNodesDeps {
  audit: Pick<AuditService, 'append'>;
  nodes: Pick<NodesModule, 'admin' | 'presence'> & {
    catalog: Pick<NodesModule['catalog'], 'invalidateSubclouds'>;
    live: Pick<NodesModule['live'], 'sessionLive'>;
    reputation: Pick<NodesModule['reputation'], 'view'>;
  };
}

export function adminNodesRoutes(b: AdminNodesDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/nodes/:address/flags',
      {
        schema: {
          tags,
          security,
          summary: 'Set pause, freeze or shadow_ban on a node (expiresInMs: a cooldown that lifts itself)',
          params: addressParams,
          body: z
            .object({
              flag: z.enum(nodeFlags),
              reason: z.string().min(1).max(500),
              expiresInMs: z
                .number()
                .int()
                .min(1000)
                .max(365 * 24 * 3600 * 1000)
                .optional(),
            })
            .strict(),
        },
      },
      async (req, reply) => {
        const { flag, reason, expiresInMs } = req.body;
        const expiresAt = expiresInMs !== undefined ? new Date(Date.now() + expiresInMs) : null;
        await b.nodes.admin.setFlag({
          nodeAddress: req.params.address,
          flag,
          setBy: actor,
          reason,
          expiresAt,
        });
        await b.audit.append({
          actor,
          action: 'node.flag.set',
          target: `node:${req.params.address}`,
          body: { flag, reason, expiresAt: expiresAt?.toISOString() ?? null },
        });
        return reply
          .status(201)
          .send({ address: req.params.address, flag, reason, expiresAt: expiresAt?.toISOString() ?? null });
      },
    );

    app.delete(
      '/nodes/:address/flags/:flag',
      {
        schema: {
          tags,
          security,
          summary: 'Clear a flag of a node',
          params: z.object({ address, flag: z.enum(nodeFlags) }),
        },
      },
      async (req) => {
        const { address: node, flag } = req.params;
        const removed = await b.nodes.admin.clearFlag(node, flag, actor);
        if (!removed) throw new AppError('not_found', `node ${node} has no ${flag} flag`);
        await b.audit.append({ actor, action: 'node.flag.clear', target: `node:${node}`, body: { flag } });
        return { address: node, flag, cleared: true };
      },
    );

    app.get(
      '/nodes/:address',
      {
        schema: {
          tags,
          security,
          summary:
            'A node: registry entry, flags, live view (with its gateway session) and measured reputation',
          params: addressParams,
        },
      },
      async (req) => {
        const node = await b.nodes.admin.findNode(req.params.address);
        if (!node) throw new AppError('not_found', `no registered node ${req.params.address}`);
        const [flags, live, connected, reputation] = await Promise.all([
          b.nodes.admin.listFlags(node.address),
          b.nodes.presence.viewNode(node.environment, node.address, 'admin'),
          b.nodes.live.sessionLive(node.environment, node.address),
          b.nodes.reputation.view(node.address),
        ]);
        return {
          node,
          flags: flags.map((f) => ({
            flag: f.flag,
            reason: f.reason,
            setBy: f.setBy,
            setAt: f.setAt.toISOString(),
            expiresAt: f.expiresAt ? f.expiresAt.toISOString() : null,
          })),
          live: { ...live, connected },
          reputation,
        };
      },
    );

    app.post(
      '/subclouds',
      {
        schema: {
          tags,
          security,
          summary: 'Create a Subcloud',
          body: z
            .object({
              name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, '1-63 of a-z 0-9 _ -'),
              environment,
            })
            .strict(),
        },
      },
      async (req, reply) => {
        const s = await b.nodes.admin.createSubcloud(req.body);
        await b.nodes.catalog.invalidateSubclouds(s.environment);
        await b.audit.append({
          actor,
          action: 'subcloud.create',
          target: `subcloud:${s.id}`,
          body: req.body,
        });
        return reply.status(201).send(s);
      },
    );

    app.post(
      '/subclouds/:id/members',
      {
        schema: {
          tags,
          security,
          summary: 'Add a node to a Subcloud',
          params: z.object({ id: uuid }),
          body: z.object({ address }).strict(),
        },
      },
      async (req, reply) => {
        await b.nodes.admin.addSubcloudMember(req.params.id, req.body.address);
        await b.audit.append({
          actor,
          action: 'subcloud.member.add',
          target: `subcloud:${req.params.id}`,
          body: { address: req.body.address },
        });
        return reply.status(201).send({ subcloudId: req.params.id, address: req.body.address });
      },
    );

    app.delete(
      '/subclouds/:id/members/:address',
      {
        schema: {
          tags,
          security,
          summary: 'Remove a node from a Subcloud',
          params: z.object({ id: uuid, address }),
        },
      },
      async (req) => {
        await b.nodes.admin.removeSubcloudMember(req.params.id, req.params.address);
        await b.audit.append({
          actor,
          action: 'subcloud.member.remove',
          target: `subcloud:${req.params.id}`,
          body: { address: req.params.address },
        });
        return { subcloudId: req.params.id, address: req.params.address, removed: true };
      },
    );
  };
}
