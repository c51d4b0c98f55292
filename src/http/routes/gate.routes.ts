// The gate API routes (being built: see issue 6).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Backbone } from '../../server/backbone.js';

export function gateRoutes(_b: Backbone): FastifyPluginAsyncZod {
  return async () => {};
}
