// A plain channel for declarations and small non-confirmed sends, reopened after a reconnect or after the
// server closed it (a failed declare closes its channel).
import type { Channel } from 'amqplib';
import { AppError } from '../../platform/errors.js';
import type { ManagedConnection } from './reconnect.js';

export class AdminChannel {
  private channel: Promise<Channel> | undefined;

  constructor(private readonly connection: ManagedConnection) {}

  /** Forget the channel (call on reconnect). */
  reset(): void {
    this.channel = undefined;
  }

  async get(): Promise<Channel> {
    if (!this.channel) {
      const conn = this.connection.connection;
      if (!conn) throw new AppError('store_unavailable', 'RabbitMQ is not connected');
      const p = conn.createChannel().then((ch) => {
        ch.on('error', () => undefined);
        ch.on('close', () => {
          if (this.channel === p) this.channel = undefined;
        });
        return ch;
      });
      p.catch(() => {
        if (this.channel === p) this.channel = undefined;
      });
      this.channel = p;
    }
    return this.channel;
  }

  async close(): Promise<void> {
    const p = this.channel;
    this.channel = undefined;
    if (p) await (await p.catch(() => undefined))?.close().catch(() => undefined);
  }
}
