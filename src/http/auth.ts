// Request authentication: Bearer API keys (Cloud API) and the admin token (Admin API).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { ApiKeyCache, AuthenticatedKey } from '../modules/accounts/index.js';
import { AppError } from '../platform/errors.js';

/** The bearer token, undefined when there is no Authorization header; 401 naming the fix when it is malformed. */
export function bearerOf(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (h === undefined || h === '') return undefined;
  const m = typeof h === 'string' ? /^Bearer +([\x21-\x7e]{1,512}) *$/i.exec(h) : null;
  if (!m)
    throw new AppError(
      'unauthorized',
      'malformed Authorization header: send exactly "Authorization: Bearer <token>" (one token of printable ASCII)',
      { param: 'authorization' },
    );
  return m[1];
}

/** The API key's namespace and limits; 401 with one message for every failure (no key oracle). */
/** What API key authentication uses. */
export interface ApiKeyAuthDeps {
  keyCache: Pick<ApiKeyCache, 'authenticate'>;
}

/** What the admin token check uses. */
export interface AdminAuthDeps {
  /** SHA-256 of ADMIN_TOKEN. */
  adminTokenHash: Buffer;
}

export async function authenticateApiKey(b: ApiKeyAuthDeps, req: FastifyRequest): Promise<AuthenticatedKey> {
  const token = bearerOf(req);
  if (!token) throw new AppError('unauthorized', 'missing API key: send Authorization: Bearer <key>');
  return b.keyCache.authenticate(token);
}

/** Compares SHA-256 digests in constant time; the admin token itself is never kept. */
export function requireAdmin(b: AdminAuthDeps, req: FastifyRequest): void {
  const token = bearerOf(req);
  if (!token) throw new AppError('unauthorized', 'missing admin token: send Authorization: Bearer <token>');
  const given = createHash('sha256').update(token).digest();
  if (!timingSafeEqual(given, b.adminTokenHash)) throw new AppError('unauthorized', 'invalid admin token');
}
