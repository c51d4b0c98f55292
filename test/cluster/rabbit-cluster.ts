// A RabbitMQ cluster of the suite's own on loopback: `size` nodes (startOwnRabbit: own names, ports, data dirs,
// no plugins) sharing one Erlang cookie, joined to the first with rabbitmqctl. Stopped and removed by PID.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RABBITMQ_BIN, startOwnRabbit, type OwnRabbit } from '../faults/rabbitmq-server.js';

const run = promisify(execFile);

export interface RabbitCluster {
  nodes: OwnRabbit[];
  /** AMQP_URL of the cluster: every node, comma-separated. */
  url: string;
  /** rabbitmqctl against `node` (the cluster's cookie); stdout. */
  ctl(node: OwnRabbit, ...args: string[]): Promise<string>;
  /** The node leading each quorum queue, by queue name (asked of a live node). */
  leaders(via: OwnRabbit): Promise<Map<string, string>>;
  destroy(): Promise<void>;
}

export async function startRabbitCluster(size = 3): Promise<RabbitCluster> {
  const home = mkdtempSync(join(tmpdir(), 'rty-cluster-home-'));
  writeFileSync(join(home, '.erlang.cookie'), randomBytes(20).toString('hex').toUpperCase(), { mode: 0o400 });
  const nodes = await Promise.all(Array.from({ length: size }, () => startOwnRabbit({ home })));
  const ctl = async (node: OwnRabbit, ...args: string[]) =>
    (
      await run(join(RABBITMQ_BIN, 'rabbitmqctl'), ['-q', '-n', node.nodename, ...args], {
        env: { ...process.env, HOME: home, ERL_EPMD_ADDRESS: '127.0.0.1' },
        timeout: 120_000,
      })
    ).stdout;
  try {
    for (const n of nodes.slice(1)) {
      await ctl(n, 'stop_app');
      await ctl(n, 'join_cluster', nodes[0]!.nodename);
      await ctl(n, 'start_app');
    }
    await ctl(nodes[0]!, 'await_online_nodes', String(size));
  } catch (err) {
    await Promise.allSettled(nodes.map((n) => n.destroy()));
    rmSync(home, { recursive: true, force: true });
    throw err;
  }
  return {
    nodes,
    url: nodes.map((n) => n.url).join(','),
    ctl,
    leaders: async (via) =>
      new Map(
        (await ctl(via, 'list_queues', '--no-table-headers', 'name', 'type', 'leader'))
          .split('\n')
          .map((l) => l.split('\t'))
          .filter((c) => c.length === 3 && c[1] === 'quorum')
          .map(([name, , leader]) => [name!, leader!.trim()]),
      ),
    destroy: async () => {
      await Promise.allSettled(nodes.map((n) => n.destroy()));
      rmSync(home, { recursive: true, force: true });
    },
  };
}
