// Public face of the jobs module: the job flow across ledger, routing, live state and job rows.
export {
  JobsService,
  type JobsOptions,
  type NodeExecutor,
  type NodeResult,
  type SubmitRequest,
  type SubmitResult,
} from './jobs.service.js';
export type { TerminalStatus, JobRow } from './jobs.repository.js';
export {
  JOB_ERROR_CODES,
  JobResults,
  jobResultSchema,
  parseStoredResult,
  type JobErrorCode,
  type JobResult,
} from './job-results.js';
export { JobStreams, streamEventSchema, type StreamEvent } from './job-stream.js';
export { choicesAsked, type FinishReason, type NodeChoice, type TokenLogprob, type ToolCall } from './job.js';
export { costMicro, flatPrice, reservationMicro, type JobPrice, type PriceQuoter } from './job-price.js';
export { DeliveryError } from './jobs.attempt.js';
export {
  SpotChecks,
  type CheckedJob,
  type CheckOutcome,
  type SpotCheckOptions,
} from './spot-check.service.js';
export { QcSettler, QC_ACTOR, type QcSettled, type QcVerdictInput } from './spot-check.settle.js';
export { compareResults, SIMILARITY_THRESHOLD, withPinnedSeed } from './qc-compare.js';
export {
  boundUsage,
  deltaBytes,
  MAX_BYTES_PER_TOKEN,
  outputByteLimit,
  outputTokenBound,
  promptTokenBound,
} from './usage-bound.js';
export type { Closed, Closing, JobRef } from './jobs.close.js';
export type { JobRecordSink } from './job-records.js';
export { jobIdForIdempotencyKey } from './idempotency.js';
export { createRecentJobsTask, type RecentJobsOptions, type RecentJobsTask } from './jobs.recovery.js';
export {
  createResultRetentionTask,
  createStaleJobsTask,
  type ResultRetentionTask,
  type StaleJobsOptions,
  type StaleJobsTask,
} from './jobs.tasks.js';
export { createJobChannels, createJobsModule, type JobChannels, type JobsModule } from './jobs.module.js';
