// Admin API: signed network config versions, queue health, the quarantine (list, replay, purge) and the
// audit chain check.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { NetworkConfigVersion } from '../../modules/network/index.js';
import type { AuditService } from '../../modules/audit/index.js';
import type { NetworkConfigService, PriceBook } from '../../modules/network/index.js';
import type { RoutingService } from '../../modules/routing/index.js';
import { auditedTx, type AccountRouteDeps } from './account-actions.js';
import { adminSecurity as security } from './gate-admin.contracts.js';
import { uuidSchema as uuid } from '../../config/vocabulary.js';

const tags = ['admin'];
const actor = 'admin';

const renderVersion = (v: NetworkConfigVersion) => ({ ...v, createdAt: v.createdAt.toISOString() });

/** Like the CLI: explicit job ids, or `all: true`; `limit` bounds the messages examined. */
const quarantineSelection = z
  .object({
    jobIds: z.array(uuid).min(1).max(1000).optional(),
    all: z.boolean().optional(),
    limit: z.number().int().min(1).max(10_000).default(100),
  })
  .strict()
  .refine((s) => (s.all === true) !== (s.jobIds !== undefined), {
    message: 'select jobs with jobIds, or all: true (not both)',
  });

/** What the Admin API's network, queue and audit routes use. */
export interface AdminNetworkDeps extends Pick<AccountRouteDeps, 'actions'> {
  audit: Pick<AuditService, 'append' | 'verify'>;
  networkConfig: Pick<NetworkConfigService, 'list' | 'networkAddress' | 'publish'>;
  prices: Pick<PriceBook, 'refresh'>;
  routing: Pick<RoutingService, 'health' | 'listQuarantine' | 'purgeQuarantine' | 'replayQuarantine'>;
}

export function adminNetworkRoutes(b: AdminNetworkDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/network/config',
      {
        schema: {
          tags,
          security,
          summary:
            'Publish the next network config version, signed by the network key (its `prices` table is checked)',
          body: z.object({ body: z.record(z.string(), z.unknown()) }).strict(),
        },
      },
      async (req, reply) => {
        const v = await auditedTx(
          b,
          (r: NetworkConfigVersion) => ({
            actor,
            action: 'network_config.publish',
            target: `network_config:${r.version}`,
            body: { version: r.version, digest: r.digest },
          }),
          (tx) => b.networkConfig.publish(req.body.body, actor, tx),
        );
        // Committed: jobs submitted through this process from now on are priced by it (others within
        // PRICE_TABLE_REFRESH_MS). A failed read here leaves that to the next refresh.
        await b.prices.refresh().catch(() => undefined);
        return reply.status(201).send(renderVersion(v));
      },
    );

    app.get(
      '/network/config',
      {
        schema: {
          tags,
          security,
          summary: 'Network config versions, newest first, and the address that signs them',
          querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }).strict(),
        },
      },
      async (req) => ({
        networkAddress: b.networkConfig.networkAddress,
        versions: (await b.networkConfig.list(req.query.limit)).map(renderVersion),
      }),
    );

    app.get(
      '/queues',
      { schema: { tags, security, summary: 'Queue depths, consumers and rates' } },
      async () => b.routing.health(),
    );

    app.get(
      '/quarantine',
      {
        schema: {
          tags,
          security,
          summary: 'Quarantined (dead-lettered) jobs',
          querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }).strict(),
        },
      },
      async (req) => ({ data: await b.routing.listQuarantine(req.query.limit) }),
    );

    for (const op of ['replay', 'purge'] as const) {
      app.post(
        `/quarantine/${op}`,
        {
          schema: {
            tags,
            security,
            summary: op === 'replay' ? 'Replay quarantined jobs' : 'Purge quarantined jobs',
            body: quarantineSelection,
          },
        },
        async (req) => {
          const s = req.body;
          const sel = s.jobIds ? { jobIds: s.jobIds, limit: s.limit } : { limit: s.limit };
          const n =
            op === 'replay' ? await b.routing.replayQuarantine(sel) : await b.routing.purgeQuarantine(sel);
          await b.audit.append({
            actor,
            action: `quarantine.${op}`,
            target: 'quarantine',
            body: { jobIds: s.jobIds ?? null, all: s.all ?? false, limit: s.limit, count: n },
          });
          return op === 'replay' ? { replayed: n } : { purged: n };
        },
      );
    }

    app.get(
      '/audit/verify',
      { schema: { tags, security, summary: 'Verify the hash chain of the audit log' } },
      async () => {
        const r = await b.audit.verify();
        return {
          ok: r.problems.length === 0,
          entries: r.entries,
          head: r.head ? { seq: r.head.seq.toString(), hash: r.head.hash.toString('hex') } : null,
          problems: r.problems.map((p) => ({ ...p, seq: p.seq.toString() })),
        };
      },
    );
  };
}
