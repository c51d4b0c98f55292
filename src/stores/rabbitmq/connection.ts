// RabbitMQ connection and confirm channels. Exchanges, queues and bindings live in topology.ts.
import amqp from 'amqplib';

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
