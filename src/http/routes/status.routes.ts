// The public Status API (no auth): online nodes, GPUs, models and availability per environment, queue depths,
// requests per second and latency p50/p99 over the last minute; cached in Redis for LIVE_CACHE_TTL_MS.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Config } from '../../config/config.js';
import type { NetworkStatusService } from '../../modules/network/index.js';

/** What the Status API uses: the network status service (cached summary) and the cache's lifetime. */
export interface StatusDeps {
  config: Pick<Config, 'LIVE_CACHE_TTL_MS'>;
  status: Pick<NetworkStatusService, 'summary'>;
}

export function statusRoutes(b: StatusDeps): FastifyPluginAsyncZod {
  const { status } = b;
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
