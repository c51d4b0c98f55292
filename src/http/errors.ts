// The one error handler of every HTTP surface: catalogue errors, schema failures, parser failures, store
// failures and unknown routes all become OpenAI-style bodies `{ error: { message, type, code, param } }`.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { AppError, isAppError } from '../platform/errors.js';
import { lingerThenClose, parserErrorOf, type RouteMethods } from './framework-errors.js';
import { publicErrorOf } from './store-errors.js';

export function sendError(reply: FastifyReply, err: AppError, param: string | null = null): FastifyReply {
  const body = err.toBody();
  const headers = err.details?.headers;
  if (headers && typeof headers === 'object') reply.headers(headers as Record<string, string>);
  // A retryable refusal says when to retry; callers that know better set their own Retry-After.
  if ((err.status === 503 || err.status === 429) && !reply.hasHeader('retry-after'))
    reply.header('retry-after', '1');
  const named = typeof err.details?.param === 'string' ? err.details.param : param;
  return reply.status(err.status).send({ error: { ...body.error, param: named } });
}

function contentLengthOf(req: FastifyRequest): number | undefined {
  const n = Number(req.headers['content-length']);
  return Number.isFinite(n) ? n : undefined;
}

export function installErrorHandler(app: FastifyInstance, routes?: RouteMethods): void {
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    if (hasZodFastifySchemaValidationErrors(err)) {
      const first = err.validation[0];
      const path = first?.instancePath?.replace(/^\//, '').replaceAll('/', '.') ?? '';
      const message = err.validation
        .map(
          (v) =>
            `${v.instancePath.replace(/^\//, '').replaceAll('/', '.') || err.validationContext}: ${v.message}`,
        )
        .join('; ');
      return sendError(
        reply,
        new AppError('invalid_request', `invalid ${err.validationContext ?? 'request'}: ${message}`),
        path || null,
      );
    }
    const parser = parserErrorOf(err, contentLengthOf(req), app.initialConfig.bodyLimit ?? 0);
    if (parser) {
      // The body is still on its way: let the client finish sending and read the 413, then close.
      if (parser.code === 'payload_too_large' && req.raw.socket) lingerThenClose(req.raw.socket);
      return sendError(reply, parser);
    }
    const translated = publicErrorOf(err);
    if (translated) {
      if (translated.status >= 500) req.log.error({ err }, 'request failed');
      else req.log.warn({ err }, 'a store refused the request');
      return sendError(reply, translated);
    }
    if (isAppError(err)) {
      if (err.status >= 500) req.log.error({ err }, 'request failed');
      return sendError(reply, err);
    }
    if (err instanceof SyntaxError || err.statusCode === 400)
      return sendError(reply, new AppError('invalid_request', `the request is malformed: ${err.message}`));
    if (err.statusCode === 413) return sendError(reply, new AppError('payload_too_large', err.message));
    if (err.statusCode === 415) return sendError(reply, new AppError('unsupported_media_type', err.message));
    req.log.error({ err }, 'unhandled error');
    return sendError(reply, new AppError('internal', `internal error (request ${req.id})`));
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? req.url;
    const allowed = routes?.allowed(path);
    if (allowed && !allowed.includes(req.method)) {
      reply.header('allow', allowed.join(', '));
      return sendError(
        reply,
        new AppError(
          'method_not_allowed',
          `${path} does not accept ${req.method}; use ${allowed.join(', ')}`,
        ),
      );
    }
    return sendError(reply, new AppError('not_found', `no route ${req.method} ${path}`));
  });
}
