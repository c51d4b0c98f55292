// Public face of the audit module: the hash-chained admin and config history.
export { AuditService, type AppendInput, type AuditVerifyResult } from './audit.service.js';
export {
  ChainVerifier,
  chainHash,
  GENESIS_HASH,
  type AuditEntry,
  type ChainProblem,
  type JsonValue,
} from './audit-chain.js';
export { createAuditModule, type AuditModule } from './audit.module.js';
