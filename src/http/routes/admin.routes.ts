// The Admin API under /admin/v1: every route requires the admin token (checked before the body is read) and
// every state change appends an entry to the hash-chained audit log with actor 'admin'.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { requireAdmin, type AdminAuthDeps } from '../auth.js';
import { adminAccountsRoutes, type AdminAccountsDeps } from './admin-accounts.routes.js';
import { adminNetworkRoutes, type AdminNetworkDeps } from './admin-network.routes.js';
import { adminNodesRoutes, type AdminNodesDeps } from './admin-nodes.routes.js';
import { adminRecordsRoutes, type RecordsRouteDeps } from './admin-records.routes.js';
import { namespaceSpaceRoutes, type SpaceRouteDeps } from './space-plans.routes.js';

/** What the Admin API uses: the admin token's digest and what each of its route groups names. */
export type AdminDeps = AdminAuthDeps &
  AdminAccountsDeps &
  AdminNodesDeps &
  AdminNetworkDeps &
  RecordsRouteDeps &
  SpaceRouteDeps;

export function adminRoutes(b: AdminDeps): FastifyPluginAsyncZod {
  return async (app) => {
    await app.register(
      async (scope) => {
        scope.addHook('onRequest', async (req) => requireAdmin(b, req));
        await scope.register(adminAccountsRoutes(b));
        await scope.register(adminNodesRoutes(b));
        await scope.register(adminNetworkRoutes(b));
        await scope.register(adminRecordsRoutes(b));
        await scope.register(
          namespaceSpaceRoutes(b, {
            tags: ['admin'],
            accountOf: async () => undefined,
            actorOf: () => 'admin',
          }),
        );
      },
      { prefix: '/admin/v1' },
    );
  };
}
