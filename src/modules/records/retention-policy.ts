// Each namespace's retention period and plan, read from PostgreSQL (namespaces table) with a short cache.
import { AppError } from '../../platform/errors.js';
import type { Clock } from '../../platform/clock.js';
import type { Pool } from '../../stores/postgres/pool.js';
import { retentionCutoff } from './record.js';

export interface NamespaceRetention {
  namespaceId: string;
  retentionDays: number;
  plan: string;
  graceUntil: Date | null;
}

export class RetentionPolicies {
  private readonly cache = new Map<string, { value: NamespaceRetention; until: number }>();

  constructor(private readonly deps: { pool: Pool; clock: Clock; cacheMs?: number }) {}

  async get(namespaceId: string): Promise<NamespaceRetention> {
    const now = Date.now();
    const hit = this.cache.get(namespaceId);
    if (hit && hit.until > now) return hit.value;
    const r = await this.deps.pool.query<{
      retention_days: number;
      retention_plan: string;
      retention_grace_until: Date | null;
    }>('select retention_days, retention_plan, retention_grace_until from namespaces where id = $1', [
      namespaceId,
    ]);
    const row = r.rows[0];
    if (!row) throw new AppError('namespace_not_found', `no namespace ${namespaceId}`);
    const value = {
      namespaceId,
      retentionDays: row.retention_days,
      plan: row.retention_plan,
      graceUntil: row.retention_grace_until,
    };
    this.cache.set(namespaceId, { value, until: now + (this.deps.cacheMs ?? 5_000) });
    return value;
  }

  /** Documents older than this are never returned, even before the retention sweep removes them. */
  async cutoff(namespaceId: string): Promise<Date> {
    const p = await this.get(namespaceId);
    return retentionCutoff(this.deps.clock.now(), p.retentionDays);
  }

  forget(namespaceId: string): void {
    this.cache.delete(namespaceId);
  }
}
