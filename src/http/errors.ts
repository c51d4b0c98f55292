// The one error handler of every HTTP surface: catalogue errors, schema failures, parser failures and
// unknown routes all become OpenAI-style bodies `{ error: { message, type, code, param } }`.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { AppError, isAppError } from '../platform/errors.js';

function send(reply: FastifyReply, err: AppError, param: string | null = null): FastifyReply {
  const body = err.toBody();
  const headers = err.details?.headers;
  if (headers && typeof headers === 'object') reply.headers(headers as Record<string, string>);
  return reply.status(err.status).send({ error: { ...body.error, param } });
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    if (isAppError(err)) {
      if (err.status >= 500) req.log.error({ err }, 'request failed');
      return send(reply, err);
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const first = err.validation[0];
      const path = first?.instancePath?.replace(/^\//, '').replaceAll('/', '.') ?? '';
      const message = err.validation
        .map(
          (v) =>
            `${v.instancePath.replace(/^\//, '').replaceAll('/', '.') || err.validationContext}: ${v.message}`,
        )
        .join('; ');
      return send(
        reply,
        new AppError('invalid_request', `invalid ${err.validationContext ?? 'request'}: ${message}`),
        path || null,
      );
    }
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return send(
          reply,
          new AppError('payload_too_large', `request body exceeds ${app.initialConfig.bodyLimit} bytes`),
        );
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return send(reply, new AppError('invalid_request', `malformed JSON body: ${err.message}`));
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return send(reply, new AppError('invalid_request', 'the body must be application/json'));
      default:
        break;
    }
    if (err instanceof SyntaxError || err.statusCode === 400)
      return send(reply, new AppError('invalid_request', err.message));
    req.log.error({ err }, 'unhandled error');
    return send(reply, new AppError('internal', 'internal error'));
  });
  app.setNotFoundHandler((req, reply) =>
    send(reply, new AppError('not_found', `no route ${req.method} ${req.url.split('?')[0]}`)),
  );
}
