// Public face of the jobs module: the job flow across ledger, routing, live state and job rows.
export {
  JobsService,
  type JobsOptions,
  type NodeExecutor,
  type NodeResult,
  type SubmitRequest,
} from './jobs.service.js';
export type { TerminalStatus } from './jobs.repository.js';
