// buildHttpApp(backbone, roles) → a Fastify instance with the route plugins of the process's roles, one error
// handler, zod schemas (validation and the OpenAPI document at /openapi.json), /healthz and Prometheus /metrics.
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Backbone, Role } from '../server/backbone.js';
import type { NodeGateway } from '../ws/node-gateway.js';
import { installErrorHandler } from './errors.js';
import { adminRoutes } from './routes/admin.routes.js';
import { cloudRoutes } from './routes/cloud.routes.js';
import { gateRoutes } from './routes/gate.routes.js';
import { nodeRoutes } from './routes/node.routes.js';
import { statusRoutes } from './routes/status.routes.js';

export interface HttpAppOptions {
  roles: ReadonlySet<Role>;
  /** Required with the io role: the node gateway the node HTTP routes feed. */
  gateway?: NodeGateway;
}

export async function buildHttpApp(b: Backbone, opts: HttpAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: b.log.child({ component: 'http' }) as FastifyBaseLogger,
    // Per-request logs would dominate at thousands of jobs/s; metrics count requests instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: b.config.HTTP_BODY_LIMIT_BYTES,
    // Several backbone processes run behind one balancer; their ids are random, not sequential.
    genReqId: () => `req_${Math.random().toString(36).slice(2, 12)}`,
    return503OnClosing: true,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandler(app);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'rty backbone APIs',
        version: '1',
        description:
          'Cloud (OpenAI-compatible), node gateway (signed node messages), Gate/Admin and Status APIs.',
      },
      components: {
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: 'Cloud API key (sk-…)' },
          adminToken: { type: 'http', scheme: 'bearer', description: 'Admin token or account token' },
        },
      },
    },
    transform: jsonSchemaTransform,
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    b.metrics.httpRequests.inc({ route, method: req.method, status: String(reply.statusCode) });
    b.metrics.httpDuration.observe({ route }, reply.elapsedTime / 1000);
  });

  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true, instance: b.instanceId }));
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) =>
    reply.header('content-type', b.metrics.registry.contentType).send(await b.metrics.registry.metrics()),
  );
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const roles = opts.roles;
  if (roles.has('cloud')) await app.register(cloudRoutes(b));
  if (roles.has('io')) {
    if (!opts.gateway) throw new Error('the io role needs a node gateway');
    await app.register(nodeRoutes(b, opts.gateway));
  }
  if (roles.has('gate')) await app.register(gateRoutes(b));
  if (roles.has('admin')) await app.register(adminRoutes(b));
  if (roles.has('status')) await app.register(statusRoutes(b));
  await app.ready();
  return app;
}
