// The composition of one backbone process, top to bottom: the stores, then the modules, then one typed record
// of services (`Backbone`), in plain order and from config alone (explicit wiring, no singletons). Every
// process builds the same backbone; its roles decide which surfaces `serve.ts` starts on top of it.
import { createHash } from 'node:crypto';
import type { Config } from '../config/config.js';
import { Lifecycle } from '../platform/lifecycle.js';
import type { Logger } from '../platform/logger.js';
import { Metrics } from '../platform/metrics.js';
import { systemClock } from '../platform/clock.js';
import { createPgPool, type Pool } from '../stores/postgres/pool.js';
import { createRedis, type Redis } from '../stores/redis/client.js';
import { connectMongo, type MongoStore } from '../stores/mongo/client.js';
import { AccountsService, ApiKeyCache, RateLimiter } from '../modules/accounts/index.js';
import { AuditService } from '../modules/audit/index.js';
import { LedgerService } from '../modules/credits/index.js';
import { JobResults, JobStreams, JobsService, type NodeExecutor } from '../modules/jobs/index.js';
import { createNodesModule, RedisGatewayDirectory, type NodesModule } from '../modules/nodes/index.js';
import { RoutingService, routingOptionsFromConfig } from '../modules/routing/index.js';
import { NetworkConfigService, RedisNonceStore, type NonceStore } from '../modules/network/index.js';
import {
  GridFsBlobStore,
  RecordsQueryService,
  RecordsRepository,
  RetentionPolicies,
  RecordStreamPublisher,
  recordStreamDeployment,
} from '../modules/records/index.js';
import { NodeGateway } from '../ws/node-gateway.js';

export const ROLES = ['cloud', 'io', 'gate', 'admin', 'status', 'workers'] as const;
export type Role = (typeof ROLES)[number];

export function parseRoles(text: string): Set<Role> {
  const roles = new Set<Role>();
  for (const r of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (!(ROLES as readonly string[]).includes(r))
      throw new Error(`unknown role "${r}"; roles are ${ROLES.join(', ')}`);
    roles.add(r as Role);
  }
  if (roles.size === 0) throw new Error(`no role given; roles are ${ROLES.join(', ')}`);
  return roles;
}

export interface Backbone {
  config: Config;
  log: Logger;
  metrics: Metrics;
  /** A random id of this process (node gateway relays, logs). */
  instanceId: string;
  pool: Pool;
  redis: Redis;
  /** Subscriber-mode connection shared by the API key cache, job results and the gateway relay. */
  subscriber: Redis;
  mongo: MongoStore;
  accounts: AccountsService;
  keyCache: ApiKeyCache;
  rateLimiter: RateLimiter;
  ledger: LedgerService;
  audit: AuditService;
  nodes: NodesModule;
  networkConfig: NetworkConfigService;
  routing: RoutingService;
  results: JobResults;
  /** Streamed jobs' deltas from the node's socket to the waiting client (in process or over Redis). */
  streams: JobStreams;
  jobs: JobsService;
  records: {
    repo: RecordsRepository;
    query: RecordsQueryService;
    policies: RetentionPolicies;
    blobs: GridFsBlobStore;
  };
  /** Node message nonces (hello, register, heartbeat, binding): one store for every surface. */
  nonces: NonceStore;
  /** Where the job flow publishes its record events (RabbitMQ → the workers' recorder). */
  recordSink: RecordStreamPublisher;
  /** The node gateway (the jobs' executor unless one is given); started by `serve` for the io role. */
  gateway: NodeGateway;
  /** SHA-256 of ADMIN_TOKEN (the token itself is not kept). */
  adminTokenHash: Buffer;
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

    const accounts = new AccountsService({ pool, apiKeyPepper: config.API_KEY_PEPPER });
    const keyCache = new ApiKeyCache({
      pool,
      redis,
      subscriber,
      accounts,
      log,
      options: {
        prefix: config.REDIS_KEY_PREFIX,
        pepper: config.API_KEY_PEPPER,
        redisTtlMs: config.API_KEY_CACHE_TTL_MS,
        localTtlMs: config.API_KEY_LOCAL_CACHE_TTL_MS,
      },
    });
    await keyCache.start();
    lifecycle.add('api-key-cache', () => keyCache.stop());
    const rateLimiter = new RateLimiter({
      redis,
      prefix: config.REDIS_KEY_PREFIX,
      defaults: {
        keyPerS: config.RATE_LIMIT_KEY_PER_S,
        keyBurst: config.RATE_LIMIT_KEY_BURST,
        namespacePerS: config.RATE_LIMIT_NAMESPACE_PER_S,
        namespaceBurst: config.RATE_LIMIT_NAMESPACE_BURST,
      },
    });
    const ledger = new LedgerService({
      pool,
      log,
      options: {
        batchMaxWaitMs: config.LEDGER_BATCH_MAX_WAIT_MS,
        batchMaxSize: config.LEDGER_BATCH_MAX_SIZE,
        batchConcurrency: config.LEDGER_BATCH_CONCURRENCY,
        holdTimeoutMs: config.LEDGER_HOLD_TIMEOUT_MS,
      },
    });
    lifecycle.add('ledger', () => ledger.stop());
    const audit = new AuditService({ pool, log });
    const nodes = createNodesModule({ config, pool, redis, log });
    await nodes.liveWatch.start();
    lifecycle.add('redis-loss-watcher', async () => nodes.liveWatch.stop());
    const routing = new RoutingService({
      pool,
      log,
      options: routingOptionsFromConfig(config, `rty-${instanceId}`),
    });
    await routing.start();
    lifecycle.add('routing', () => routing.stop());
    const results = new JobResults({
      redis,
      subscriber,
      prefix: config.REDIS_KEY_PREFIX,
      ttlMs: config.JOB_RESULT_TTL_MS,
      log,
    });
    await results.start();
    lifecycle.add('job-results', () => results.stop());
    const streams = new JobStreams({ redis, subscriber, prefix: config.REDIS_KEY_PREFIX, log });
    lifecycle.add('job-streams', async () => streams.stop());
    const repo = new RecordsRepository(mongo.db);
    const blobs = new GridFsBlobStore(mongo.db);
    const policies = new RetentionPolicies({ pool, clock: systemClock });
    const records = { repo, blobs, policies, query: new RecordsQueryService({ repo, policies, blobs }) };

    // Every process publishes job record events (confirmed, on the routing publisher connection); processes
    // with the workers role write them to MongoDB. Stopped before routing closes the connection.
    const deployment = recordStreamDeployment(config);
    const recordSink = new RecordStreamPublisher({
      connection: routing.connection,
      log,
      names: deployment.names,
      deploymentStores: deployment.stores,
    });
    lifecycle.add('record-sink', () => recordSink.stop());

    const partial: Omit<Backbone, 'jobs' | 'gateway'> = {
      config,
      log,
      metrics,
      instanceId,
      pool,
      redis,
      subscriber,
      mongo,
      accounts,
      keyCache,
      rateLimiter,
      ledger,
      audit,
      nodes,
      networkConfig: new NetworkConfigService({
        pool,
        signingKey: config.NETWORK_SIGNING_KEY as `0x${string}`,
      }),
      routing,
      results,
      streams,
      records,
      recordSink,
      nonces: new RedisNonceStore(redis, config.REDIS_KEY_PREFIX),
      adminTokenHash: createHash('sha256').update(config.ADMIN_TOKEN).digest(),
      lifecycle,
    };
    // The jobs module delivers through the node gateway; `serve` starts it (sockets, relay) for the io role.
    const gateway = new NodeGateway({
      ...partial,
      liveWatch: nodes.liveWatch,
      directory: new RedisGatewayDirectory({
        redis,
        subscriber,
        prefix: config.REDIS_KEY_PREFIX,
        instanceId,
      }),
    });
    const jobs = new JobsService({
      pool,
      ledger,
      routing,
      matchmaking: nodes.matchmaking,
      executor: opts.executor ?? gateway,
      log,
      results,
      metrics,
      records: recordSink,
      options: {
        pricePerTokenMicro: BigInt(config.PRICE_PER_TOKEN_MICRO),
        nodeSharePercent: BigInt(config.NODE_SHARE_PERCENT),
        maxAttempts: config.ROUTING_MAX_ATTEMPTS,
        jobTimeoutMs: config.JOB_ATTEMPT_TIMEOUT_MS,
        capacityWaitMs: config.JOB_CAPACITY_WAIT_MS,
      },
    });
    // After the dispatch drain (registered later, so stopped earlier): the last batched commits finish here.
    lifecycle.add('job-commits', () => jobs.stop());
    return { ...partial, gateway, jobs };
  } catch (err) {
    await lifecycle.stop();
    throw err;
  }
}
