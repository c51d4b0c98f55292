// The status API routes (being built: see issue 6).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Backbone } from '../../server/backbone.js';

export function statusRoutes(_b: Backbone): FastifyPluginAsyncZod {
  return async () => {};
}
