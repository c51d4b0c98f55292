// The Space plan: paid extended retention. A daily storage charge per namespace through the ledger (decided
// once per namespace and day, then charged idempotently), a grace period when credits run out, and the fall
// back to the default retention (with an event) when the grace period ends unpaid.
import { AppError, isAppError } from '../../platform/errors.js';
import type { Clock } from '../../platform/clock.js';
import type { Logger } from '../../platform/logger.js';
import { withTransaction, type Pool, type PoolClient } from '../../stores/postgres/pool.js';
import type { AppendInput } from '../audit/index.js';
import type { LedgerService } from '../credits/index.js';
import { dayOf } from './record.js';
import { dayChargeMicro, spacePlanCatalogue, type SpacePlan, type SpacePlanCatalogue } from './space-plan.js';
import type { RecordsRepository } from './records.repository.js';

export interface StorageBillingOptions {
  defaultRetentionDays: number;
  graceMs: number;
  /** The plans on offer (default: the built-in catalogue). */
  plans?: SpacePlanCatalogue;
}

export type ChargeOutcome = 'charged' | 'already_charged' | 'free' | 'unpaid' | 'grace_started' | 'lapsed';

type DayRow = {
  bytes: bigint;
  amount: bigint;
  status: 'pending' | 'charged' | 'unpaid' | 'free';
  plan: string;
};

export class StorageBillingService {
  private readonly log: Logger;
  readonly plans: SpacePlanCatalogue;

  constructor(
    private readonly deps: {
      pool: Pool;
      repo: RecordsRepository;
      ledger: LedgerService;
      clock: Clock;
      log: Logger;
      options: StorageBillingOptions;
      /** Where a lapse (a plan change the network makes) is audited, in the lapse's transaction. */
      audit?: { append(input: AppendInput, tx: PoolClient): Promise<unknown> };
    },
  ) {
    this.log = deps.log.child({ component: 'storage-billing' });
    this.plans = deps.options.plans ?? spacePlanCatalogue();
  }

  /**
   * Puts a namespace on a plan (`default` or one of `plans`) and records the event, charging nothing: operators'
   * and tests' tool. The product path (charged, audited, idempotent) is SpacePlansService.change.
   */
  async setPlan(namespaceId: string, plan: string): Promise<void> {
    const days =
      plan === 'default' ? this.deps.options.defaultRetentionDays : this.plans.get(plan)?.retentionDays;
    if (days === undefined) throw new AppError('invalid_request', `unknown retention plan ${plan}`);
    await withTransaction(this.deps.pool, async (tx) => {
      const r = await tx.query(
        `update namespaces set retention_plan = $2, retention_days = $3, retention_grace_until = null where id = $1`,
        [namespaceId, plan, days],
      );
      if (r.rowCount === 0) throw new AppError('namespace_not_found', `no namespace ${namespaceId}`);
      await tx.query(
        `insert into retention_plan_events (namespace_id, kind, body) values ($1, 'plan_set', $2)`,
        [namespaceId, JSON.stringify({ plan, days })],
      );
    });
  }

  /** Charges today's storage of every namespace on a paid plan; safe to run any number of times a day. */
  async chargeAll(signal?: AbortSignal): Promise<Record<ChargeOutcome, number>> {
    const counts: Record<ChargeOutcome, number> = {
      charged: 0,
      already_charged: 0,
      free: 0,
      unpaid: 0,
      grace_started: 0,
      lapsed: 0,
    };
    const r = await this.deps.pool.query<{ id: string }>(
      `select id from namespaces where retention_plan <> 'default' order by id`,
    );
    for (const { id } of r.rows) {
      if (signal?.aborted) break;
      counts[await this.chargeNamespace(id)] += 1;
    }
    return counts;
  }

  async chargeNamespace(namespaceId: string): Promise<ChargeOutcome> {
    const now = this.deps.clock.now();
    const day = dayOf(now);
    const ns = await this.deps.pool.query<{ retention_plan: string; retention_grace_until: Date | null }>(
      'select retention_plan, retention_grace_until from namespaces where id = $1',
      [namespaceId],
    );
    const plan = ns.rows[0]?.retention_plan;
    const price = plan ? this.plans.get(plan) : undefined;
    if (!price) return 'free';
    const row = await this.decideDay(namespaceId, day, price);
    if (row.status === 'charged') return 'already_charged';
    if (row.status === 'free') return 'free';
    try {
      // The stored amount, never a fresh measurement: a second run the same day replays the same entry.
      await this.deps.ledger.chargeStorage(namespaceId, row.amount, `records-storage:${day}`);
    } catch (err) {
      if (!isAppError(err, 'insufficient_credits')) throw err;
      return this.onUnpaid(namespaceId, day, ns.rows[0]!.retention_grace_until, plan!, now);
    }
    await withTransaction(this.deps.pool, async (tx) => {
      await tx.query(
        `update storage_charge_days set status = 'charged' where namespace_id = $1 and day = $2`,
        [namespaceId, day],
      );
      await tx.query(
        `update namespaces set retention_grace_until = null, extended_retention_until = $2::date + 1 where id = $1`,
        [namespaceId, day],
      );
      if (ns.rows[0]!.retention_grace_until) await this.event(tx, namespaceId, 'grace_cleared', { day });
    });
    return 'charged';
  }

  /** Measures stored bytes once per namespace and day; later runs that day read the same decision. */
  private async decideDay(namespaceId: string, day: string, plan: SpacePlan): Promise<DayRow> {
    const read = () =>
      this.deps.pool.query<DayRow>(
        'select bytes, amount, status, plan from storage_charge_days where namespace_id = $1 and day = $2',
        [namespaceId, day],
      );
    const existing = await read();
    if (existing.rows[0]) return existing.rows[0];
    const bytes = await this.storedBytes(namespaceId);
    const amount = dayChargeMicro(bytes, plan);
    await this.deps.pool.query(
      `insert into storage_charge_days (namespace_id, day, plan, bytes, amount, status) values ($1, $2, $3, $4, $5, $6)
       on conflict (namespace_id, day) do nothing`,
      [namespaceId, day, plan.id, bytes, amount, amount === 0n ? 'free' : 'pending'],
    );
    return (await read()).rows[0]!;
  }

  /** Bytes a namespace keeps in MongoDB (job documents, logs, QC results): what a day on a plan is priced by. */
  async storedBytes(namespaceId: string): Promise<number> {
    const { repo } = this.deps;
    let bytes = 0;
    for (const c of [repo.jobs, repo.logs, repo.qc]) bytes += await repo.storedBytes(c as never, namespaceId);
    return bytes;
  }

  private async onUnpaid(
    namespaceId: string,
    day: string,
    graceUntil: Date | null,
    plan: string,
    now: Date,
  ): Promise<ChargeOutcome> {
    return withTransaction(this.deps.pool, async (tx) => {
      await tx.query(
        `update storage_charge_days set status = 'unpaid' where namespace_id = $1 and day = $2`,
        [namespaceId, day],
      );
      if (!graceUntil) {
        const until = new Date(now.getTime() + this.deps.options.graceMs);
        await tx.query('update namespaces set retention_grace_until = $2 where id = $1', [
          namespaceId,
          until,
        ]);
        await this.event(tx, namespaceId, 'grace_started', { day, plan, graceUntil: until.toISOString() });
        this.log.warn(
          { namespaceId, plan, graceUntil: until },
          'storage charge unpaid; grace period started',
        );
        return 'grace_started';
      }
      if (now < graceUntil) return 'unpaid';
      const days = this.deps.options.defaultRetentionDays;
      await tx.query(
        `update namespaces set retention_plan = 'default', retention_days = $2, retention_grace_until = null,
           extended_retention_until = null where id = $1`,
        [namespaceId, days],
      );
      await this.event(tx, namespaceId, 'plan_lapsed', { day, from: plan, retentionDays: days });
      await this.deps.audit?.append(
        {
          actor: 'system:storage-billing',
          action: 'space_plan.lapse',
          target: `namespace:${namespaceId}`,
          body: { day, from: plan, plan: 'default', days },
        },
        tx,
      );
      this.log.warn(
        { namespaceId, plan, retentionDays: days },
        'retention plan lapsed; back to the default period',
      );
      return 'lapsed';
    });
  }

  private async event(
    tx: { query: Pool['query'] },
    namespaceId: string,
    kind: string,
    body: Record<string, unknown>,
  ): Promise<void> {
    await tx.query('insert into retention_plan_events (namespace_id, kind, body) values ($1, $2, $3)', [
      namespaceId,
      kind,
      JSON.stringify(body),
    ]);
  }
}
