// RabbitMQ connection and confirm channels. Exchanges, queues and bindings live in topology.ts.
import amqp from 'amqplib';
import { AppError } from '../../platform/errors.js';
import { StoreError } from '../../platform/store-error.js';
import { isNetworkError } from '../net-errors.js';

export type AmqpConnection = amqp.ChannelModel;
export type ConfirmChannel = amqp.ConfirmChannel;

/** The broker URLs of AMQP_URL: one, or a cluster's nodes separated by commas. */
export const amqpUrls = (url: string): string[] =>
  url
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);

/** Per URL list: the node the last connection reached, tried first next time (a node that died is skipped). */
const lastGood = new Map<string, number>();

/**
 * Connects to the first node of `url` that answers, starting with the one that answered last; every lost
 * connection is re-made through here (reconnect.ts), so it fails over to another node of a cluster.
 */
export async function connectAmqp(url: string, name = 'rty'): Promise<AmqpConnection> {
  const urls = amqpUrls(url);
  const start = lastGood.get(url) ?? 0;
  let last: unknown;
  for (let i = 0; i < urls.length; i += 1) {
    const k = (start + i) % urls.length;
    try {
      const conn = await amqp.connect(urls[k]!, { clientProperties: { connection_name: name } });
      lastGood.set(url, k);
      return conn;
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

export function serverVersion(conn: AmqpConnection): string {
  const props = (conn.connection as unknown as { serverProperties?: Record<string, unknown> })
    .serverProperties;
  return `RabbitMQ ${String(props?.version ?? '?')}`;
}

export async function amqpHealth(conn: AmqpConnection): Promise<{ version: string; rttMs: number }> {
  const t0 = performance.now();
  const ch = await conn.createChannel();
  await ch.close();
  return { version: serverVersion(conn), rttMs: performance.now() - t0 };
}

// AMQP reply codes of a broker going away or pushing back: 320 connection-forced (broker stopping), 501 frame
// error, 504 channel error, 505 unexpected frame, 506 resource error, 541 internal error; and amqplib's own
// "closed" errors when a channel/connection died under the call.
const amqpUnavailableCodes = new Set([320, 501, 504, 505, 506, 541]);
const amqpUnavailable =
  /^(Channel closed|Channel ended|Connection closed|Socket closed|Heartbeat timeout|Unexpected close)/i;

/** Maps an amqplib failure to the catalogue: a broker that is down, stopping or unreachable is retryable. */
export function translateAmqpError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  if (
    (typeof code === 'number' && amqpUnavailableCodes.has(code)) ||
    (err instanceof Error && err.name === 'IllegalOperationError') ||
    amqpUnavailable.test(message) ||
    isNetworkError(err)
  )
    return new StoreError(
      { store: 'rabbitmq', kind: 'unavailable' },
      'RabbitMQ is unavailable or restarting; retry after a moment',
      { store: 'rabbitmq' },
      { cause: err },
    );
  return err;
}
