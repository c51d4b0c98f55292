// Store-boundary error classification against the real drivers' own errors: each driver pointed at a closed
// port (refused), a socket that resets, a socket that never answers (timeout), plus the server replies of a
// restart (57P01/57P03/08006, Redis LOADING). Every one is a retryable store_unavailable; a bug is not.
import { createServer, type Server, type Socket } from 'node:net';
import amqp from 'amqplib';
import { ReplyError } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../platform/errors.js';
import { translatePgError } from './postgres/pool.js';
import { translateAmqpError } from './rabbitmq/connection.js';
import { createRedis, translateRedisError } from './redis/client.js';
import { classifyStoreError } from './store-errors.js';

type Mode = 'reset' | 'silent';
const servers: Server[] = [];
const sockets = new Set<Socket>();
async function listen(mode: Mode | 'closed'): Promise<number> {
  const s = createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => undefined);
    if (mode === 'reset') sock.resetAndDestroy();
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  if (mode === 'closed') await new Promise((r) => s.close(r));
  else servers.push(s);
  return port;
}
let closed: number;
let reset: number;
let silent: number;
beforeAll(async () => {
  [closed, reset, silent] = await Promise.all([listen('closed'), listen('reset'), listen('silent')]);
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

function expectUnavailable(translated: unknown, original: unknown): void {
  expect(translated, String(original)).toBeInstanceOf(AppError);
  expect((translated as AppError).code).toBe('store_unavailable');
  expect((translated as AppError).retryable).toBe(true);
  expect((translated as AppError).status).toBe(503);
  expect(classifyStoreError(original)?.code).toBe('store_unavailable');
  // The public message is the boundary's own; the driver's text (addresses, socket codes) stays in `cause`.
  for (const e of [translated as AppError, classifyStoreError(original)!]) {
    expect(e.message).not.toMatch(DRIVER_TEXT);
    if (original !== e) expect(e.cause).toBe(original);
  }
}

const DRIVER_TEXT =
  /ECONN|ETIMEDOUT|EPIPE|127\.0\.0\.1|terminat|Connection is closed|Socket closed|LOADING|the database system/i;

async function pgError(port: number): Promise<unknown> {
  const pool = new pg.Pool({
    connectionString: `postgres://x@127.0.0.1:${port}/x`,
    connectionTimeoutMillis: 300,
  });
  pool.on('error', () => undefined);
  const err = await pool.query('select 1').then(
    () => undefined,
    (e: unknown) => e,
  );
  await pool.end().catch(() => undefined);
  return err;
}

async function redisError(port: number): Promise<unknown> {
  const r = createRedis(`redis://127.0.0.1:${port}`, { commandTimeoutMs: 300 });
  const err = await r.get('k').then(
    () => undefined,
    (e: unknown) => e,
  );
  r.disconnect();
  return err;
}

async function amqpError(port: number): Promise<unknown> {
  return amqp.connect(`amqp://127.0.0.1:${port}`, { timeout: 300 }).then(
    async (c) => void (await c.close()),
    (e: unknown) => e,
  );
}

describe('PostgreSQL driver errors', () => {
  it.each(['closed', 'reset', 'silent'] as const)('a %s port is store_unavailable', async (kind) => {
    const err = await pgError({ closed, reset, silent }[kind]);
    expect(err).toBeInstanceOf(Error);
    expectUnavailable(translatePgError(err), err);
  });
  it.each([
    ['57P01', 'terminating connection due to administrator command'],
    ['57P02', 'terminating connection due to crash of another server process'],
    ['57P03', 'the database system is starting up'],
    ['08006', 'connection failure'],
    ['08001', 'could not connect'],
    ['53300', 'sorry, too many clients already'],
  ])('SQLSTATE %s is store_unavailable', (code, message) => {
    const err = new pg.DatabaseError(message, message.length, 'error');
    err.code = code;
    expectUnavailable(translatePgError(err), err);
  });
  it('a connection dropped mid-query is store_unavailable', () => {
    const err = new Error('Connection terminated unexpectedly');
    expectUnavailable(translatePgError(err), err);
  });
  it('a bad request or a bug stays what it is', () => {
    const err = new pg.DatabaseError('syntax error at or near "selec"', 10, 'error');
    err.code = '42601';
    expect(translatePgError(err)).toBe(err);
    expect(classifyStoreError(err)).toBeUndefined();
    expect(classifyStoreError(new TypeError('x is undefined'))).toBeUndefined();
  });
});

describe('Redis driver errors', () => {
  it.each(['closed', 'reset', 'silent'] as const)('a %s port is store_unavailable', async (kind) => {
    const err = await redisError({ closed, reset, silent }[kind]);
    expect(err).toBeInstanceOf(Error);
    expectUnavailable(translateRedisError(err), err);
  });
  it.each([
    'LOADING Redis is loading the dataset in memory',
    "READONLY You can't write against a read only replica.",
    'MASTERDOWN Link with MASTER is down',
  ])('the reply "%s" is store_unavailable', (message) => {
    const err = new ReplyError(message);
    expectUnavailable(translateRedisError(err), err);
  });
  it('a command error stays what it is', () => {
    const err = new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value');
    expect(translateRedisError(err)).toBe(err);
    expect(classifyStoreError(err)).toBeUndefined();
  });
});

describe('RabbitMQ driver errors', () => {
  it.each(['closed', 'reset', 'silent'] as const)('a %s port is store_unavailable', async (kind) => {
    const err = await amqpError({ closed, reset, silent }[kind]);
    expect(err).toBeInstanceOf(Error);
    expectUnavailable(translateAmqpError(err), err);
  });
  it('a broker stopping (320 CONNECTION_FORCED) is store_unavailable', () => {
    const err = Object.assign(
      new Error(
        'Connection closed: 320 (CONNECTION-FORCED) with message "broker forced connection closure with reason \'shutdown\'"',
      ),
      { code: 320 },
    );
    expectUnavailable(translateAmqpError(err), err);
  });
  it('a refused declaration (406 PRECONDITION_FAILED on a channel) stays what it is', () => {
    const err = Object.assign(new Error('Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED)'), {
      code: 406,
    });
    expect(translateAmqpError(err)).toBe(err);
  });
});
