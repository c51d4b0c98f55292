// One backbone process: the composed backbone (compose.ts), then the surfaces of its roles — HTTP APIs (cloud,
// gate, admin, status), the node gateway and the dispatch consumer (io), background workers (workers). Stops in
// named phases, whatever order the surfaces started in: refuse new work → drain in-flight jobs → close node
// sockets → close HTTP → close the modules and stores, under one deadline.
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/config.js';
import { ENVIRONMENTS } from '../config/vocabulary.js';
import { ShutdownPlan } from '../platform/lifecycle.js';
import type { Logger } from '../platform/logger.js';
import type { JobConsumer } from '../modules/routing/index.js';
import type { NodeExecutor } from '../modules/jobs/index.js';
import { buildHttpApp } from '../http/app.js';
import type { NodeGateway } from '../ws/node-gateway.js';
import { startWorkers } from '../background/workers.js';
import type { Role } from '../config/roles.js';
import { createBackbone, type Backbone } from './compose.js';

export interface RunningServer {
  backbone: Backbone;
  app: FastifyInstance;
  gateway: NodeGateway;
  /** http://host:port the process listens on. */
  url: string;
  roles: ReadonlySet<Role>;
  /** Idempotent graceful stop. */
  stop(): Promise<void>;
}

export async function startServer(opts: {
  config: Config;
  log: Logger;
  roles: ReadonlySet<Role>;
  /** Overrides HTTP_PORT (0: any free port). */
  port?: number;
  /** Runs jobs somewhere other than the node gateway (tests of the API surfaces with nodes in process). */
  executor?: NodeExecutor;
}): Promise<RunningServer> {
  const { config, log, roles } = opts;
  const b = await createBackbone(config, log, opts.executor ? { executor: opts.executor } : {});
  const gateway = b.gateway;
  const plan = new ShutdownPlan(log);
  plan.add('close-stores', 'backbone', () => b.lifecycle.stop(config.SHUTDOWN_DRAIN_MS + 10_000));
  let consumer: JobConsumer | undefined;
  let app: FastifyInstance | undefined;
  try {
    app = await buildHttpApp(b, { roles, gateway });
    const httpApp = app;
    if (roles.has('io')) {
      await gateway.start();
      gateway.attach(httpApp.server);
      // Node sockets close before the HTTP server: its close waits for every upgraded socket to end.
      plan.add('close-sockets', 'node-gateway', () => gateway.stop());
    }
    await httpApp.listen({ host: config.HTTP_HOST, port: opts.port ?? config.HTTP_PORT });
    plan.add('close-http', 'http', () => httpApp.close());
    if (roles.has('workers')) {
      const workers = await startWorkers(b);
      // No task starts and no record batch is taken once stopping begins (another process takes them over).
      plan.add('refuse-new-work', 'workers', () => workers.stop());
    }
    if (roles.has('io')) {
      const c = await b.routing.startConsumer({
        serves: ENVIRONMENTS.map((environment) => ({ environment, model: '*', subcloud: '*' })),
        handler: b.jobs.handle,
        onExpired: b.jobs.onExpired,
        name: `rty-${b.instanceId}-dispatch`,
      });
      consumer = c;
      plan.add('drain', 'dispatch', async () => {
        // Together: the consumer cancels its subscriptions and waits for its handlers, while the jobs service
        // stops dispatches that still wait for a free node (their jobs are retried by another process) and
        // lets the ones running on nodes finish.
        const [, left] = await Promise.all([c.stop(), b.jobs.drain(config.SHUTDOWN_DRAIN_MS)]);
        if (left > 0)
          log.warn({ left }, 'jobs still running at the drain deadline; their messages will be redelivered');
      });
    }
  } catch (err) {
    await plan.stop();
    throw err;
  }
  const address = app.server.address() as AddressInfo;
  const url = `http://${config.HTTP_HOST}:${address.port}`;
  log.info(
    { url, roles: [...roles], instance: b.instanceId, consuming: consumer !== undefined },
    'backbone serving',
  );
  return {
    backbone: b,
    app,
    gateway,
    url,
    roles,
    stop: () => plan.stop(config.SHUTDOWN_DRAIN_MS + 10_000),
  };
}
