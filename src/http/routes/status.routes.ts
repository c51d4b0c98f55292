// The public Status API (no auth): online nodes, GPUs, models and availability per environment, queue depths,
// requests per second and latency p50/p99 over the last minute; cached in Redis for LIVE_CACHE_TTL_MS.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { NetworkStatusService } from '../../modules/network/index.js';
import type { Backbone } from '../../app/compose.js';
import { readRecordsBacklog } from '../../modules/records/index.js';
import { publicQueueName } from '../../modules/routing/index.js';
import { AppError } from '../../platform/errors.js';
import { topologyNames } from '../../stores/rabbitmq/topology.js';

export function statusRoutes(b: Backbone): FastifyPluginAsyncZod {
  const status = new NetworkStatusService({
    pool: b.pool,
    redis: b.redis,
    prefix: b.config.REDIS_KEY_PREFIX,
    ttlMs: b.config.LIVE_CACHE_TTL_MS,
    liveStatus: () => b.nodes.catalog.status(),
    catalog: (env) => b.nodes.catalog.catalog(env),
    // Public: lanes are summed per environment, model and priority. A lane's name ends with its Subcloud and
    // namespace ids, which must not leak to anyone (per-lane depths are on /admin/v1/queues).
    queueDepths: async () => {
      const h = await b.routing.health();
      const out: Record<string, number> = {};
      for (const q of h.queues) {
        if (q.messages === undefined) continue;
        const name = publicQueueName(q.queue, b.config.DEPLOYMENT);
        out[name] = (out[name] ?? 0) + q.messages;
      }
      return out;
    },
    // Records lag as seen on the broker (any process): what the recorder has not written yet.
    recordsBacklog: async () => {
      const conn = b.routing.connection.connection;
      if (!conn) throw new AppError('store_unavailable', 'RabbitMQ is not connected');
      return readRecordsBacklog(conn, topologyNames(b.config.DEPLOYMENT));
    },
  });
  return async (app) => {
    for (const url of ['/status/v1', '/status']) {
      app.get(
        url,
        {
          schema: {
            tags: ['status'],
            summary: 'Network status (public)',
            ...(url === '/status' ? { hide: true } : {}),
          },
        },
        async (_req, reply) => {
          const { summary, cached } = await status.summary();
          reply.header('x-cache', cached ? 'hit' : 'miss');
          reply.header(
            'cache-control',
            `public, max-age=${Math.max(1, Math.floor(b.config.LIVE_CACHE_TTL_MS / 1000))}`,
          );
          return summary;
        },
      );
    }
  };
}
