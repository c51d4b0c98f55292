// RabbitMQ connection and confirm channels. Exchanges, queues and bindings live in topology.ts.
import amqp from 'amqplib';
import { AppError } from '../../platform/errors.js';
import { isNetworkError } from '../net-errors.js';

export type AmqpConnection = amqp.ChannelModel;
export type ConfirmChannel = amqp.ConfirmChannel;

export async function connectAmqp(url: string, name = 'rty'): Promise<AmqpConnection> {
  return amqp.connect(url, { clientProperties: { connection_name: name } });
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
    return new AppError(
      'store_unavailable',
      'RabbitMQ is unavailable or restarting; retry after a moment',
      { store: 'rabbitmq' },
      { cause: err },
    );
  return err;
}
