// The Admin API under /admin/v1: every route requires the admin token (checked before the body is read) and
// every state change appends an entry to the hash-chained audit log with actor 'admin'.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Backbone } from '../../app/compose.js';
import { requireAdmin } from '../auth.js';
import { adminAccountsRoutes } from './admin-accounts.routes.js';
import { adminNetworkRoutes } from './admin-network.routes.js';
import { adminNodesRoutes } from './admin-nodes.routes.js';
import { adminRecordsRoutes } from './admin-records.routes.js';

export function adminRoutes(b: Backbone): FastifyPluginAsyncZod {
  return async (app) => {
    await app.register(
      async (scope) => {
        scope.addHook('onRequest', async (req) => requireAdmin(b, req));
        await scope.register(adminAccountsRoutes(b));
        await scope.register(adminNodesRoutes(b));
        await scope.register(adminNetworkRoutes(b));
        await scope.register(adminRecordsRoutes(b));
      },
      { prefix: '/admin/v1' },
    );
  };
}
