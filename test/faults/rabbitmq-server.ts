// A RabbitMQ node of the fault suite's own, which it may stop and kill -9: its own nodename, AMQP and
// distribution ports on loopback, data (Mnesia + message store) and log directories, Erlang cookie (HOME),
// no plugins (the shared broker's management listener port is never contended). Started in the foreground so
// the spawned PID is the Erlang VM itself; stopped by that PID. The shared broker is never touched; the node
// only registers its name with the machine's epmd, as every Erlang node does.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { freePort, waitUntil } from './servers.js';

export const RABBITMQ_BIN = process.env.RABBITMQ_BIN ?? '/usr/lib/rabbitmq/bin';

export interface OwnRabbit {
  port: number;
  /** The Erlang node name (`rty-faults-<port>@localhost`), for rabbitmqctl -n. */
  nodename: string;
  /** amqp:// URL of the default vhost `/`. */
  url: string;
  /** kill -9 of the VM: unconfirmed work is lost, confirmed persistent messages survive on disk. */
  kill(): Promise<void>;
  /** A clean stop (SIGTERM: the broker closes connections with 320 CONNECTION_FORCED, then exits). */
  stop(): Promise<void>;
  /** Starts the node again on the same data directory (durable queues and persistent messages come back). */
  start(): Promise<void>;
  destroy(): Promise<void>;
}

/**
 * `home`: a directory whose `.erlang.cookie` the node uses (nodes of one cluster share it); by default the
 * node's own directory, so its cookie is its own.
 */
export async function startOwnRabbit(opts: { home?: string } = {}): Promise<OwnRabbit> {
  const [port, distPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'rty-faults-rabbitmq-'));
  const url = `amqp://guest:guest@127.0.0.1:${port}/`;
  const nodename = `rty-faults-${port}@localhost`;
  writeFileSync(join(dir, 'rabbitmq-env.conf'), ''); // not /etc/rabbitmq's (the shared node's name and flags)
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  writeFileSync(
    join(dir, 'rabbitmq.conf'),
    [`listeners.tcp.1 = 127.0.0.1:${port}`, 'log.console = false', 'log.file.level = warning', ''].join('\n'),
  );
  const env = {
    ...process.env,
    HOME: opts.home ?? dir, // a fresh .erlang.cookie of its own, or the cluster's
    // Foreground with the VM exec'd in place of the script (no signal-forwarding shell in between).
    RABBITMQ_ALLOW_INPUT: '1',
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_NODENAME: nodename,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
  };
  let child: ChildProcess | undefined;
  const ping = async () => {
    const c = await amqp.connect(url, { timeout: 2000 });
    c.on('error', () => undefined);
    await c.close();
  };
  const start = async () => {
    const log = openSync(join(dir, 'stdout.log'), 'a');
    const c = spawn(join(RABBITMQ_BIN, 'rabbitmq-server'), ['-noinput'], {
      cwd: dir,
      env,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    child = c;
    const exited = new Promise<never>((_, reject) =>
      c.once('exit', (code, signal) =>
        reject(new Error(`own RabbitMQ exited at start (${code ?? signal}); see ${dir}/stdout.log`)),
      ),
    );
    exited.catch(() => undefined);
    await Promise.race([waitUntil('own RabbitMQ', ping, 90_000), exited]);
  };
  const signalAndWait = async (signal: NodeJS.Signals) => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
  };
  await start();
  return {
    port,
    nodename,
    url,
    kill: () => signalAndWait('SIGKILL'),
    stop: () => signalAndWait('SIGTERM'),
    start,
    destroy: async () => {
      await signalAndWait('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
