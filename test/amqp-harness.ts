// RabbitMQ isolation for tests: a vhost of its own per test file (rabbitmqctl add_vhost + permissions),
// deleted on cleanup, and a server-side close of one named connection to simulate a broker-side drop.
import { execFile } from 'node:child_process';
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
  /** Deletes the vhost (and everything in it). */
  drop(): Promise<void>;
}

export async function createAmqpTestVhost(): Promise<AmqpTestVhost> {
  const vhost = uniqueName('rty_test');
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
    drop: async () => {
      await rabbitmqctl('delete_vhost', vhost);
    },
  };
}
