// Builds the audit module: the hash-chained admin audit log (PostgreSQL).
import type { Logger } from '../../platform/logger.js';
import type { Stores } from '../../stores/stores.js';
import { AuditService } from './audit.service.js';

export interface AuditModule {
  audit: AuditService;
}

export function createAuditModule(deps: { stores: Pick<Stores, 'pool'>; log: Logger }): AuditModule {
  return { audit: new AuditService({ pool: deps.stores.pool, log: deps.log }) };
}
