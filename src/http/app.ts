// buildHttpApp(backbone, roles) → a Fastify instance with the route plugins of the process's roles, one error
// handler, one input guard, security headers, optional CORS for the Cloud API, zod schemas (validation and the
// OpenAPI document at /openapi.json), /healthz and Prometheus /metrics (both admin-only by default).
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Config } from '../config/config.js';
import type { Role } from '../config/roles.js';
import type { Logger } from '../platform/logger.js';
import type { Metrics } from '../platform/metrics.js';
import { requireAdmin, type AdminAuthDeps } from './auth.js';
import { installErrorHandler, sendError } from './errors.js';
import {
  frameworkErrorOf,
  handleClientError,
  refuseOversizedContinue,
  RouteMethods,
} from './framework-errors.js';
import { installInputGuard } from './input-guard.js';
import { adminRoutes, type AdminDeps } from './routes/admin.routes.js';
import { cloudRoutes, type CloudDeps } from './routes/cloud.routes.js';
import { gateRoutes, type GateDeps } from './routes/gate.routes.js';
import { nodeRoutes, type NodeConnections, type NodeRouteDeps } from './routes/node.routes.js';
import { statusRoutes, type StatusDeps } from './routes/status.routes.js';

/** What the HTTP app uses: its own settings and telemetry, and what each route plugin names. */
export type HttpDeps = AdminAuthDeps &
  CloudDeps &
  NodeRouteDeps &
  GateDeps &
  AdminDeps &
  StatusDeps & {
    config: Pick<
      Config,
      'HTTP_BODY_LIMIT_BYTES' | 'HTTP_JSON_MAX_DEPTH' | 'HTTP_OPS_ENDPOINTS' | 'CLOUD_CORS_ORIGINS'
    >;
    log: Logger;
    metrics: Pick<Metrics, 'httpRequests' | 'httpDuration' | 'registry'>;
    instanceId: string;
  };

export interface HttpAppOptions {
  roles: ReadonlySet<Role>;
  /** Required with the io role: the node gateway the node HTTP routes feed. */
  gateway?: NodeConnections;
}

export async function buildHttpApp(b: HttpDeps, opts: HttpAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: b.log.child({ component: 'http' }) as FastifyBaseLogger,
    // Per-request logs would dominate at thousands of jobs/s; metrics count requests instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: b.config.HTTP_BODY_LIMIT_BYTES,
    // Several backbone processes run behind one balancer; their ids are random, not sequential.
    genReqId: () => `req_${Math.random().toString(36).slice(2, 12)}`,
    return503OnClosing: true,
    clientErrorHandler: handleClientError,
    frameworkErrors: (err, _req, reply) => sendError(reply, frameworkErrorOf(err)),
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // Every API takes JSON: a text/plain body is a 415, not a string handed to a JSON schema.
  app.removeContentTypeParser('text/plain');
  const routes = new RouteMethods();
  routes.install(app);
  installErrorHandler(app, routes);
  installInputGuard(app, { maxDepth: b.config.HTTP_JSON_MAX_DEPTH });
  refuseOversizedContinue(app.server, b.config.HTTP_BODY_LIMIT_BYTES);
  installSecurityHeaders(app);
  if (opts.roles.has('cloud') && b.config.CLOUD_CORS_ORIGINS.length > 0)
    await app.register(cors, cloudCors(b.config.CLOUD_CORS_ORIGINS));

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
  // Metrics and the API document describe the deployment: the admin's unless configured public.
  const ops =
    b.config.HTTP_OPS_ENDPOINTS === 'admin'
      ? { onRequest: async (req: FastifyRequest) => requireAdmin(b, req) }
      : {};
  app.get('/metrics', { schema: { hide: true }, ...ops }, async (_req, reply) =>
    reply.header('content-type', b.metrics.registry.contentType).send(await b.metrics.registry.metrics()),
  );
  app.get('/openapi.json', { schema: { hide: true }, ...ops }, async () => app.swagger());

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

/**
 * Every answer is `nosniff`; none may be cached unless its route says so (Status is public and cacheable; SSE
 * sets its own): responses carry new keys, tokens, balances and job outputs.
 */
function installSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    return payload;
  });
}

/** CORS for the Cloud API only (`/v1/…` except the node routes): the allow-listed origins, preflight answered. */
function cloudCors(origins: readonly string[]) {
  const allowed = new Set(origins);
  const off = { origin: false };
  const on = {
    origin: (origin: string | undefined, cb: (err: Error | null, allow: boolean) => void) =>
      cb(null, origin !== undefined && allowed.has(origin)),
    methods: ['GET', 'POST'],
    // No fixed allowedHeaders: @fastify/cors then reflects Access-Control-Request-Headers. The official OpenAI JS
    // SDK sends x-stainless-* (os, arch, lang, runtime, retry-count, timeout, …), openai-organization/-project
    // and idempotency-key, and the set grows with SDK releases; a fixed list blocks it in browsers. The origin
    // allow-list above still decides whether any CORS header is sent at all.
    exposedHeaders: [
      'x-request-id',
      'idempotent-replayed',
      'location',
      'retry-after',
      'x-ratelimit-limit',
      'x-ratelimit-remaining',
      'x-ratelimit-reset',
    ],
    maxAge: 600,
    strictPreflight: true,
  };
  return {
    delegator: (req: FastifyRequest, cb: (err: Error | null, o: typeof on | typeof off) => void) => {
      const path = req.url.split('?')[0] ?? '';
      cb(null, path.startsWith('/v1/') && !path.startsWith('/v1/nodes') ? on : off);
    },
  };
}
