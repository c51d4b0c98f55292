// The admin API routes (being built: see issue 6).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Backbone } from '../../server/backbone.js';

export function adminRoutes(_b: Backbone): FastifyPluginAsyncZod {
  return async () => {};
}
