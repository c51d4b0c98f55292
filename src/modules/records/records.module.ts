// Builds the records module: job documents and logs (MongoDB) with their query service and retention policies,
// the retention sweep and the Space-plan storage charge (its recurring tasks), the record sink the job flow
// publishes to (when given the routing connection) and, for the workers role, the records stream consumer.
import type { Registry } from 'prom-client';
import type { Config } from '../../config/config.js';
import { systemClock } from '../../platform/clock.js';
import type { Logger } from '../../platform/logger.js';
import type { RecurringTask } from '../../platform/tasks.js';
import { createColdStore } from '../../stores/cold/index.js';
import { ManagedConnection } from '../../stores/rabbitmq/reconnect.js';
import type { Stores } from '../../stores/stores.js';
import type { AuditService } from '../audit/index.js';
import type { LedgerService } from '../credits/index.js';
import { GridFsBlobStore } from './blob-store.js';
import { RecorderService } from './recorder.service.js';
import { RecordStreamConsumer } from './record-stream.consumer.js';
import { recordStreamDeployment } from './record-stream.deployment.js';
import { RecordStreamPublisher } from './record-stream.publisher.js';
import { RecordsQueryService } from './records-query.service.js';
import { RecordsRepository } from './records.repository.js';
import { createRecordsTasks } from './records.tasks.js';
import { RetentionPolicies } from './retention-policy.js';
import { RetentionService } from './retention.service.js';
import { spacePlanCatalogue } from './space-plan.js';
import { SpacePlansService } from './space-plans.service.js';
import { StorageBillingService } from './storage-billing.service.js';

/** The workers role's records stream consumer with its own AMQP connection; stop() closes both. */
export interface RecordsConsumer {
  consumer: RecordStreamConsumer;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface RecordsModule {
  repo: RecordsRepository;
  query: RecordsQueryService;
  policies: RetentionPolicies;
  blobs: GridFsBlobStore;
  retention: RetentionService;
  billing: StorageBillingService;
  /** Choosing, changing and cancelling Space plans (charged, audited, idempotent); retention receipts. */
  plans: SpacePlansService;
  tasks: RecurringTask[];
  /** A consumer of the records stream into MongoDB (built on demand: only the workers role runs one). */
  createConsumer(opts: { name: string; registry?: Registry }): RecordsConsumer;
}

export function createRecordsModule(deps: {
  config: Config;
  stores: Pick<Stores, 'pool' | 'mongo'>;
  log: Logger;
  ledger: LedgerService;
  /** The audit log plan changes are recorded in (in their own transaction). */
  audit: Pick<AuditService, 'append'>;
}): RecordsModule {
  const { config: c, log } = deps;
  const { pool, mongo } = deps.stores;
  const repo = new RecordsRepository(mongo.db);
  const blobs = new GridFsBlobStore(mongo.db);
  const policies = new RetentionPolicies({ pool, clock: systemClock });
  const retention = new RetentionService({
    pool,
    repo,
    target: createColdStore({ kind: c.COLD_STORAGE, dir: c.RECORDS_EXPORT_DIR, ipfsApiUrl: c.IPFS_API_URL }),
    clock: systemClock,
    log,
    options: { fileMaxDocs: c.RECORDS_EXPORT_FILE_MAX_DOCS, deleteBatchSize: c.RECORDS_DELETE_BATCH_SIZE },
  });
  const billing = new StorageBillingService({
    pool,
    repo,
    ledger: deps.ledger,
    audit: deps.audit,
    clock: systemClock,
    log,
    options: {
      defaultRetentionDays: c.RECORDS_DEFAULT_RETENTION_DAYS,
      graceMs: c.RECORDS_PLAN_GRACE_MS,
      plans: spacePlanCatalogue(c.RECORDS_SPACE_PLANS),
    },
  });
  const plans = new SpacePlansService({
    pool,
    ledger: deps.ledger,
    audit: deps.audit,
    billing,
    policies,
    clock: systemClock,
    options: { plans: billing.plans, defaultRetentionDays: c.RECORDS_DEFAULT_RETENTION_DAYS },
  });
  const createConsumer = (opts: { name: string; registry?: Registry }): RecordsConsumer => {
    const recorder = new RecorderService({
      repo,
      blobs,
      policies,
      log,
      options: {
        largePayloadBytes: c.RECORDS_LARGE_PAYLOAD_BYTES,
        maxDocumentBytes: c.RECORDS_MAX_DOCUMENT_BYTES,
      },
    });
    const connection = new ManagedConnection({
      url: c.AMQP_URL,
      name: opts.name,
      log,
      reconnectDelayMs: c.ROUTING_RECONNECT_DELAY_MS,
    });
    const consumer = new RecordStreamConsumer({
      connection,
      recorder,
      log,
      ...recordStreamOptions(c),
      ...(opts.registry ? { registry: opts.registry } : {}),
      options: {
        prefetch: c.RECORDS_CONSUMER_PREFETCH,
        batchMaxEvents: c.RECORDS_CONSUMER_BATCH_MAX_EVENTS,
        batchMaxWaitMs: c.RECORDS_CONSUMER_BATCH_MAX_WAIT_MS,
        retryDelayMs: c.RECORDS_CONSUMER_RETRY_DELAY_MS,
      },
    });
    return {
      consumer,
      start: async () => {
        await connection.start();
        await consumer.start();
      },
      // Every step runs even if one throws; the first error is reported.
      stop: async () => {
        const errors: unknown[] = [];
        await consumer.stop().catch((e: unknown) => errors.push(e));
        await connection.stop().catch((e: unknown) => errors.push(e));
        if (errors.length > 0) throw errors[0];
      },
    };
  };
  return {
    repo,
    blobs,
    policies,
    query: new RecordsQueryService({ repo, policies, blobs }),
    retention,
    billing,
    plans,
    tasks: createRecordsTasks({ retention, billing, retentionIntervalMs: c.RECORDS_RETENTION_INTERVAL_MS }),
    createConsumer,
  };
}

/** The job flow's record sink: confirmed publishing of record batches on the routing publisher connection. */
export function createRecordSink(deps: {
  config: Config;
  connection: ManagedConnection;
  log: Logger;
}): RecordStreamPublisher {
  return new RecordStreamPublisher({
    connection: deps.connection,
    log: deps.log,
    ...recordStreamOptions(deps.config),
  });
}

/** The records stream's names (DEPLOYMENT) and the stores they feed (checked against other backbones). */
function recordStreamOptions(c: Config) {
  const d = recordStreamDeployment(c);
  return { names: d.names, deploymentStores: d.stores };
}
