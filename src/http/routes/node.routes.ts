// Node HTTP routes: register, heartbeat, config sync (being built: see issue 6).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Backbone } from '../../server/backbone.js';
import type { NodeGateway } from '../../ws/node-gateway.js';

export function nodeRoutes(_b: Backbone, _gateway: NodeGateway): FastifyPluginAsyncZod {
  return async () => {};
}
