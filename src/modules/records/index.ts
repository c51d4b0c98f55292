// Public face of the records module (job documents, logs, QC results, retention and the Space plan).
export { RecorderService, type RecorderOptions, type RecordOutcome } from './recorder.service.js';
export { RecordsQueryService, type AggregateRow, type JobTrace, type Page } from './records-query.service.js';
export { RecordsRepository } from './records.repository.js';
export { GridFsBlobStore, type BlobStore } from './blob-store.js';
export { RetentionPolicies, type NamespaceRetention } from './retention-policy.js';
export {
  recordEvent,
  LOG_TYPES,
  JOB_STATUSES,
  type RecordEvent,
  type RecordEventInput,
  type JobFilter,
  type LogFilter,
  type PageRequest,
  type AggregateRequest,
} from './records.contracts.js';
export { COLLECTIONS, type JobDoc, type LogDoc, type QcDoc, type BlobRef } from './record.js';
export {
  RetentionService,
  type RetentionOptions,
  type RetentionStep,
  type RetentionSummary,
} from './retention.service.js';
export type { RetentionRun, ExportFile } from './retention.repository.js';
export {
  DEFAULT_SPACE_PLANS,
  dayChargeMicro,
  renderSpacePlan,
  spacePlanCatalogue,
  type SpacePlan,
  type SpacePlanCatalogue,
  type SpacePlanSpec,
} from './space-plan.js';
export {
  SpacePlansService,
  type PlanChange,
  type PlanChangeRequest,
  type PlanView,
} from './space-plans.service.js';
export {
  StorageBillingService,
  type StorageBillingOptions,
  type ChargeOutcome,
} from './storage-billing.service.js';
export { createRecordsTasks } from './records.tasks.js';
export {
  RecordStreamPublisher,
  defaultRecordStreamPublisherOptions,
  type RecordStreamPublisherOptions,
} from './record-stream.publisher.js';
export {
  RecordStreamConsumer,
  defaultRecordStreamConsumerOptions,
  type BatchRecorder,
  type RecordStreamConsumerOptions,
  type RecordStreamStats,
} from './record-stream.consumer.js';
export {
  readRecordsBacklog,
  registerRecordStreamMetrics,
  type RecordsBacklog,
  type RecordsLag,
} from './record-stream.metrics.js';
export {
  decodeRecordBatch,
  encodeRecordBatch,
  RECORD_BATCH_VERSION,
  type RecordBatch,
} from './record-stream.contracts.js';
export { isTransientStoreError } from './record-stream.errors.js';
export { recordStreamDeployment, type RecordStreamDeployment } from './record-stream.deployment.js';
export {
  listDeadRecords,
  purgeDeadRecords,
  replayDeadRecords,
  type DeadRecord,
} from './record-stream.dead.js';
export { STORABLE_MARKERS, STORABLE_MAX_DEPTH, jsonText, toStorable, toStorableString } from './storable.js';
export {
  createRecordsModule,
  createRecordSink,
  type RecordsConsumer,
  type RecordsModule,
} from './records.module.js';
