// The Status route on an in-memory fake of its port (no store): the summary as the service gives it, the cache
// verdict in x-cache, a public cache lifetime from LIVE_CACHE_TTL_MS (never below one second), both paths.
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import type { NetworkStatusSummary } from '../../modules/network/index.js';
import { statusRoutes, type StatusDeps } from './status.routes.js';

const summary = {
  generatedAt: '2026-01-01T00:00:00.000Z',
  environments: {},
} as unknown as NetworkStatusSummary;

async function appWith(deps: StatusDeps) {
  const app = Fastify();
  await app.register(statusRoutes(deps));
  await app.ready();
  return app;
}

describe('status routes on a fake status service', () => {
  it('answers the summary with its cache verdict and a public max-age', async () => {
    const verdicts = [false, true];
    let calls = 0;
    const app = await appWith({
      config: { LIVE_CACHE_TTL_MS: 5_000 },
      status: { summary: async () => ({ summary, cached: verdicts[calls++] ?? true }) },
    });
    try {
      const first = await app.inject({ method: 'GET', url: '/status/v1' });
      expect(first.statusCode).toBe(200);
      expect(first.json()).toEqual(summary);
      expect(first.headers['x-cache']).toBe('miss');
      expect(first.headers['cache-control']).toBe('public, max-age=5');
      const second = await app.inject({ method: 'GET', url: '/status' });
      expect(second.statusCode).toBe(200);
      expect(second.headers['x-cache']).toBe('hit');
      expect(calls).toBe(2);
    } finally {
      await app.close();
    }
  });

  it('a cache shorter than a second still says max-age=1; a failing service is an error, not a summary', async () => {
    const app = await appWith({
      config: { LIVE_CACHE_TTL_MS: 200 },
      status: {
        summary: async () => {
          throw new Error('redis down');
        },
      },
    });
    try {
      const r = await app.inject({ method: 'GET', url: '/status/v1' });
      expect(r.statusCode).toBe(500);
      expect(r.headers['x-cache']).toBeUndefined();
    } finally {
      await app.close();
    }
    const ok = await appWith({
      config: { LIVE_CACHE_TTL_MS: 200 },
      status: { summary: async () => ({ summary, cached: true }) },
    });
    try {
      const r = await ok.inject({ method: 'GET', url: '/status/v1' });
      expect(r.headers['cache-control']).toBe('public, max-age=1');
    } finally {
      await ok.close();
    }
  });
});
