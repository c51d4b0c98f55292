// Request authentication: Bearer API keys (Cloud API) and the admin token (Admin API).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { AuthenticatedKey } from '../modules/accounts/index.js';
import { AppError } from '../platform/errors.js';
import type { Backbone } from '../server/backbone.js';

export function bearerOf(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/** The API key's namespace and limits; 401 with one message for every failure (no key oracle). */
export async function authenticateApiKey(b: Backbone, req: FastifyRequest): Promise<AuthenticatedKey> {
  const token = bearerOf(req);
  if (!token) throw new AppError('unauthorized', 'missing API key: send Authorization: Bearer <key>');
  return b.keyCache.authenticate(token);
}

/** Compares SHA-256 digests in constant time; the admin token itself is never kept. */
export function requireAdmin(b: Backbone, req: FastifyRequest): void {
  const token = bearerOf(req);
  if (!token) throw new AppError('unauthorized', 'missing admin token: send Authorization: Bearer <token>');
  const given = createHash('sha256').update(token).digest();
  if (!timingSafeEqual(given, b.adminTokenHash)) throw new AppError('unauthorized', 'invalid admin token');
}
