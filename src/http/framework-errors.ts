// What the HTTP server refuses before a route runs, in the catalogue's OpenAI shape: malformed requests the
// Node parser rejects (431, 400), bad URLs, bodies over the limit (413 from Content-Length, before the body is
// read, closed without a reset), and 405 with `Allow` for a known path asked with another method.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { AppError, type ErrorCode } from '../platform/errors.js';

/** The OpenAI-shaped JSON of a catalogue error. */
export function errorJson(err: AppError, param: string | null = null): string {
  return JSON.stringify({ error: { ...err.toBody().error, param } });
}

// Node's parser codes (llhttp HPE_*) for a request it could not read; every one is answered, then closed.
function clientErrorOf(err: NodeJS.ErrnoException): AppError {
  if (err.code === 'HPE_HEADER_OVERFLOW')
    return new AppError(
      'headers_too_large',
      'the request headers are too large; send fewer or shorter headers',
    );
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'ERR_HTTP_HEADERS_TIMEOUT')
    return new AppError('invalid_request', 'the request was not received in time; send it again');
  if (err.code === 'HPE_INVALID_HEADER_TOKEN' || err.code === 'HPE_INVALID_CONSTANT')
    return new AppError(
      'invalid_request',
      'a request header is malformed (name or value holds characters HTTP does not allow)',
    );
  return new AppError('invalid_request', 'the request is not valid HTTP/1.1');
}

/** Fastify's `clientErrorHandler`: the socket gets an OpenAI-shaped answer (when still writable), then closes. */
export function handleClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const e = clientErrorOf(err);
  const body = errorJson(e);
  if (socket.writable)
    socket.end(
      `HTTP/1.1 ${e.status} ${e.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`,
    );
  // end() flushes the answer; destroy only what cannot be flushed.
  setTimeout(() => socket.destroy(), 1_000).unref();
}

/** Fastify's `frameworkErrors`: a URL that does not decode, or a path parameter over the length limit. */
export function frameworkErrorOf(err: { code?: string }): AppError {
  if (err.code === 'FST_ERR_BAD_URL')
    return new AppError(
      'invalid_request',
      'the URL path is not valid percent-encoded UTF-8; encode path segments with encodeURIComponent',
    );
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH')
    return new AppError('invalid_request', 'a path parameter is too long');
  return new AppError('invalid_request', 'the request could not be routed');
}

/**
 * After a refused request whose body is still arriving, closes like a lingering close: our side ends (the answer
 * is flushed), the rest of the body is read and dropped for at most `maxMs`, then the socket closes. Closing at
 * once would reset the connection under the client's upload, and the client would never read the 413.
 */
export function lingerThenClose(socket: Socket, maxMs = 2_000): void {
  const s = socket as Socket & { destroySoon?: () => void };
  s.destroySoon = () => {
    if (s.writable) s.end();
    const timer = setTimeout(() => s.destroy(), maxMs);
    timer.unref();
    s.once('close', () => clearTimeout(timer));
    s.once('end', () => s.destroy());
    s.resume();
  };
}

/**
 * `Expect: 100-continue` with a Content-Length over the limit: answered 413 without the 100, so the client never
 * sends the body. Other requests continue to Fastify as before.
 */
export function refuseOversizedContinue(server: Server, limitBytes: number): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const length = Number(req.headers['content-length']);
    if (Number.isFinite(length) && length > limitBytes) {
      const body = errorJson(tooLarge(length, limitBytes));
      res.writeHead(413, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        connection: 'close',
      });
      res.end(body);
      return;
    }
    res.writeContinue();
    server.emit('request', req, res);
  });
}

export function tooLarge(lengthBytes: number | undefined, limitBytes: number): AppError {
  const size = lengthBytes !== undefined && Number.isFinite(lengthBytes) ? `${lengthBytes} bytes` : 'larger';
  return new AppError(
    'payload_too_large',
    `the request body is ${size}; the limit is ${limitBytes} bytes (HTTP_BODY_LIMIT_BYTES)`,
  );
}

/** Patterns of the registered routes with their methods, to tell "no such path" from "not with this method". */
export class RouteMethods {
  private readonly routes = new Map<string, { re: RegExp; methods: Set<string> }>();

  /** Call before the routes are registered. */
  install(app: FastifyInstance): void {
    app.addHook('onRoute', (r) => {
      if (r.url.includes('*')) return; // catch-alls (CORS preflight) say nothing about a path
      const methods = Array.isArray(r.method) ? r.method : [r.method];
      let entry = this.routes.get(r.url);
      if (!entry) {
        const pattern = r.url
          .split('/')
          .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
          .join('/');
        entry = { re: new RegExp(`^${pattern}/?$`), methods: new Set() };
        this.routes.set(r.url, entry);
      }
      for (const m of methods) entry.methods.add(m.toUpperCase());
    });
  }

  /** The methods the path has, or undefined when no route has this path. */
  allowed(path: string): string[] | undefined {
    const found = new Set<string>();
    for (const { re, methods } of this.routes.values())
      if (re.test(path)) for (const m of methods) found.add(m);
    return found.size > 0 ? [...found].sort() : undefined;
  }
}

/** Maps a Fastify error code of the body parser to a catalogue error (undefined: not a parser error). */
export function parserErrorOf(
  err: { code?: string; message: string },
  contentLength: number | undefined,
  limitBytes: number,
): AppError | undefined {
  const bad = (code: ErrorCode, message: string) => new AppError(code, message);
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return tooLarge(contentLength, limitBytes);
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return bad('invalid_request', `the body is not valid JSON: ${err.message}`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return bad('invalid_request', 'the body is empty; send a JSON object (or no Content-Type)');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return bad('unsupported_media_type', 'the body must be sent as Content-Type: application/json');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return bad('invalid_request', 'the body length does not match its Content-Length header');
    case 'FST_ERR_CTP_INVALID_TYPE':
    case 'FST_ERR_CTP_INVALID_HANDLER':
      return bad('unsupported_media_type', 'the Content-Type header is not valid');
    default:
      return undefined;
  }
}
