// RabbitMQ isolation for tests: a vhost of its own per test file (rabbitmqctl add_vhost + permissions),
// deleted on cleanup, and a server-side close of one named connection to simulate a broker-side drop.
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { baseConfig, uniqueName } from './harness.js';

const run = promisify(execFile);

async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', ['-q', ...args], { timeout: 60_000 });
  return stdout;
}

export interface AmqpTestVhost {
  vhost: string;
  /** AMQP_URL pointing at the vhost. */
  url: string;
  /** Closes, from the server side, every connection of this vhost whose connection_name starts with `name`. */
  closeConnections(name: string, reason?: string): Promise<number>;
  /** The type (classic, quorum …) of every queue of the vhost, by name. */
  queueTypes(): Promise<Map<string, string>>;
  /** Deletes the vhost (and everything in it). */
  drop(): Promise<void>;
}

export async function createAmqpTestVhost(): Promise<AmqpTestVhost> {
  const vhost = uniqueName('rty_routing_test');
  await rabbitmqctl('add_vhost', vhost);
  await rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
  const base = new URL(baseConfig.AMQP_URL);
  base.pathname = `/${encodeURIComponent(vhost)}`;
  return {
    vhost,
    url: base.toString(),
    closeConnections: async (name, reason = 'test: simulated broker-side drop') => {
      // Tab-separated rows: pid (in the form close_connection takes), vhost, client properties.
      const rows = (await rabbitmqctl('list_connections', 'pid', 'vhost', 'client_properties'))
        .split('\n')
        .map((line) => line.split('\t'))
        .filter((cols) => cols.length >= 3 && cols[1] === vhost);
      const mine = rows.filter((cols) => {
        const m = /\{"connection_name","([^"]*)"\}/.exec(cols[2]!);
        return m !== null && m[1]!.startsWith(name);
      });
      for (const cols of mine) await rabbitmqctl('close_connection', cols[0]!, reason);
      return mine.length;
    },
    queueTypes: async () =>
      new Map(
        (await rabbitmqctl('list_queues', '-p', vhost, 'name', 'type'))
          .split('\n')
          .map((line) => line.split('\t'))
          .filter((cols) => cols.length === 2 && cols[0] !== 'name') // no header row
          .map(([name, type]) => [name!, type!.trim()]),
      ),
    drop: async () => {
      await rabbitmqctl('delete_vhost', vhost);
    },
  };
}

export interface TcpProxy {
  /** amqp:// URL through the proxy to `vhost`. */
  url: string;
  /** Holds back everything the broker sends (confirms, deliveries) on current connections. */
  freezeDownstream(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of the broker. Freezing the broker-to-client direction makes "the broker has the
 * message but its confirm never arrived" deterministic; when the broker closes a connection the proxy closes
 * the client side and drops what it held back.
 */
export async function createTcpProxy(vhostUrl: string): Promise<TcpProxy> {
  const target = new URL(vhostUrl);
  const sockets = new Set<net.Socket>();
  const frozen = new Set<() => void>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5672), target.hostname);
    sockets.add(client).add(upstream);
    let hold = false;
    frozen.add(() => (hold = true));
    client.on('data', (d) => upstream.write(d));
    // Broker-to-client bytes are whole AMQP frames (type 1, channel 2, size 4, payload, 0xCE). While
    // frozen, only connection-level frames (channel 0: close, heartbeats) pass, so a server-side close
    // still reaches the client at once.
    let pending = Buffer.alloc(0);
    upstream.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 7) {
        const size = pending.readUInt32BE(3);
        if (pending.length < size + 8) break;
        const frame = pending.subarray(0, size + 8);
        pending = pending.subarray(size + 8);
        if (!hold || frame.readUInt16BE(1) === 0) client.write(frame);
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(vhostUrl);
  url.host = `127.0.0.1:${port}`;
  return {
    url: url.toString(),
    freezeDownstream: () => {
      for (const f of frozen) f();
      frozen.clear();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
