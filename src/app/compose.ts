// The composition of one backbone process, top to bottom: the stores, then the modules (one factory call each,
// in dependency order), then one typed record of services (`Backbone`), from config alone (explicit wiring, no
// singletons). Every process builds the same backbone; its roles decide which surfaces `serve.ts` starts on it.
import { createHash } from 'node:crypto';
import type { Config } from '../config/config.js';
import { Lifecycle } from '../platform/lifecycle.js';
import type { Logger } from '../platform/logger.js';
import { Metrics } from '../platform/metrics.js';
import type { RecurringTask } from '../platform/tasks.js';
import { createPgPool } from '../stores/postgres/pool.js';
import { createRedis } from '../stores/redis/client.js';
import { connectMongo } from '../stores/mongo/client.js';
import type { Stores } from '../stores/stores.js';
import { createAccountsModule, type AccountsModule } from '../modules/accounts/index.js';
import { createAuditModule, type AuditModule } from '../modules/audit/index.js';
import { createCreditsModule, type CreditsModule } from '../modules/credits/index.js';
import {
  createJobChannels,
  createJobsModule,
  type JobChannels,
  type JobsModule,
  type NodeExecutor,
} from '../modules/jobs/index.js';
import { createNodesModule, RedisGatewayDirectory, type NodesModule } from '../modules/nodes/index.js';
import { createRoutingModule, type RoutingModule } from '../modules/routing/index.js';
import {
  createNetworkModule,
  createNetworkStatus,
  type NetworkModule,
  type NetworkStatusService,
} from '../modules/network/index.js';
import {
  createRecordSink,
  createRecordsModule,
  type RecordsModule,
  type RecordStreamPublisher,
} from '../modules/records/index.js';
import { createRollupsModule } from '../modules/rollups/index.js';
import { NodeGateway } from '../ws/node-gateway.js';

export { parseRoles, ROLES, type Role } from '../config/roles.js';

/** The record of every service of one process: what the surfaces are given (each takes only what it names). */
export interface Backbone
  extends Stores,
    AccountsModule,
    AuditModule,
    Pick<CreditsModule, 'ledger'>,
    Pick<RoutingModule, 'routing'>,
    NetworkModule,
    JobChannels,
    Omit<JobsModule, 'tasks'> {
  config: Config;
  log: Logger;
  metrics: Metrics;
  /** A random id of this process (node gateway relays, logs). */
  instanceId: string;
  nodes: NodesModule;
  /** The public network status (Status API), cached in Redis. */
  status: NetworkStatusService;
  records: Omit<RecordsModule, 'tasks'>;
  /** Where the job flow publishes its record events (RabbitMQ → the workers' recorder). */
  recordSink: RecordStreamPublisher;
  /** The node gateway (the jobs' executor unless one is given); started by `serve` for the io role. */
  gateway: NodeGateway;
  /** Every module's recurring tasks, for the workers role's runner. */
  tasks: RecurringTask[];
  /** SHA-256 of ADMIN_TOKEN (the token itself is not kept). */
  adminTokenHash: Buffer;
  /** Closes the modules, then the stores, in reverse order of building. */
  lifecycle: Lifecycle;
}

export interface ComposeOptions {
  /** Runs jobs somewhere other than the node gateway (tests of the API surfaces with nodes in process). */
  executor?: NodeExecutor;
}

/** Connects every store and builds every module; `stop()` on the lifecycle closes them in reverse order. */
export async function createBackbone(
  config: Config,
  log: Logger,
  opts: ComposeOptions = {},
): Promise<Backbone> {
  const lifecycle = new Lifecycle(log);
  const instanceId = `${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const metrics = new Metrics();
  try {
    // 1. The stores.
    const pool = createPgPool({
      url: config.POSTGRES_URL,
      size: config.POSTGRES_POOL_SIZE,
      schema: config.POSTGRES_SCHEMA,
      applicationName: `rty-${instanceId}`,
    });
    lifecycle.add('postgres', () => pool.end());
    const redis = createRedis(config.REDIS_URL, { log });
    lifecycle.add('redis', async () => void redis.disconnect());
    const subscriber = createRedis(config.REDIS_URL, { subscriber: true, log });
    lifecycle.add('redis-subscriber', async () => void subscriber.disconnect());
    const mongo = await connectMongo(config.MONGO_URL, config.MONGO_DB);
    lifecycle.add('mongo', () => mongo.close());
    const stores: Stores = { pool, redis, subscriber, mongo };

    // 2. The modules, each from its factory, in dependency order.
    const { audit } = createAuditModule({ stores, log });
    const accounts = createAccountsModule({ config, stores, log, audit });
    await accounts.keyCache.start();
    lifecycle.add('api-key-cache', () => accounts.keyCache.stop());
    const credits = createCreditsModule({ config, stores, log });
    lifecycle.add('ledger', () => credits.ledger.stop());
    const nodes = createNodesModule({ config, pool, redis, log });
    await nodes.liveWatch.start();
    lifecycle.add('redis-loss-watcher', async () => nodes.liveWatch.stop());
    // Stopped after the dispatch drain (registered earlier): the last attempts' observations are flushed.
    lifecycle.add('reputation', () => nodes.reputation.stop());
    const routing = createRoutingModule({ config, stores, log, connectionName: `rty-${instanceId}` });
    await routing.routing.start();
    lifecycle.add('routing', () => routing.routing.stop());
    const network = createNetworkModule({ config, stores, log });
    const status = createNetworkStatus({ config, stores, nodes, routing: routing.routing });
    const records = createRecordsModule({ config, stores, log, ledger: credits.ledger, audit });
    const rollups = createRollupsModule({ config, stores, log, audit });
    const channels = createJobChannels({ config, stores, log });
    await channels.results.start();
    lifecycle.add('job-results', () => channels.results.stop());
    lifecycle.add('job-streams', async () => channels.streams.stop());
    // Every process publishes job record events (confirmed, on the routing publisher connection); processes
    // with the workers role write them to MongoDB. Stopped before routing closes the connection.
    const recordSink = createRecordSink({ config, connection: routing.routing.connection, log });
    lifecycle.add('record-sink', () => recordSink.stop());
    // The jobs module delivers through the node gateway; `serve` starts it (sockets, relay) for the io role.
    const gateway = new NodeGateway({
      config,
      log,
      instanceId,
      metrics,
      nodes,
      liveWatch: nodes.liveWatch,
      directory: new RedisGatewayDirectory({
        redis,
        subscriber,
        prefix: config.REDIS_KEY_PREFIX,
        instanceId,
      }),
      nonces: network.nonces,
      streams: channels.streams,
    });
    const jobs = createJobsModule({
      config,
      stores,
      log,
      metrics,
      channels,
      ledger: credits.ledger,
      routing: routing.routing,
      matchmaking: nodes.matchmaking,
      executor: opts.executor ?? gateway,
      records: recordSink,
      prices: network.prices,
      admin: nodes.admin,
      audit,
    });
    // After the dispatch drain (serve stops it first): the last batched commits finish here.
    lifecycle.add('job-commits', () => jobs.jobs.stop());

    // 3. The record of services.
    return {
      ...stores,
      config,
      log,
      metrics,
      instanceId,
      ...accounts,
      ledger: credits.ledger,
      audit,
      nodes,
      routing: routing.routing,
      ...network,
      status,
      ...channels,
      jobs: jobs.jobs,
      records,
      recordSink,
      gateway,
      tasks: [
        ...credits.tasks,
        nodes.sweepTask,
        nodes.flagReconcileTask,
        ...records.tasks,
        ...rollups.tasks,
        ...routing.tasks,
        ...jobs.tasks,
      ],
      adminTokenHash: createHash('sha256').update(config.ADMIN_TOKEN).digest(),
      lifecycle,
    };
  } catch (err) {
    await lifecycle.stop();
    throw err;
  }
}
