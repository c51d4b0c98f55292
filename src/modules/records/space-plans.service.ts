// Space plans as a product: choose, change or cancel a namespace's plan. A change pays the first day on the new
// plan through the ledger, and commits with its plan event, its idempotency row and its audit entry in one
// transaction (a namespace short of credits gets 402 and nothing changes); a retried request replays.
import { randomUUID } from 'node:crypto';
import type { AppendInput } from '../audit/index.js';
import type { LedgerOp, LedgerService, OpResult } from '../credits/index.js';
import { AppError } from '../../platform/errors.js';
import type { Clock } from '../../platform/clock.js';
import { withTransaction, type Pool, type PoolClient } from '../../stores/postgres/pool.js';
import { dayOf } from './record.js';
import type { RetentionPolicies } from './retention-policy.js';
import { RetentionRepository, type RetentionRun } from './retention.repository.js';
import { dayChargeMicro, type SpacePlan, type SpacePlanCatalogue } from './space-plan.js';
import type { StorageBillingService } from './storage-billing.service.js';

export interface PlanChangeRequest {
  namespaceId: string;
  /** A plan of the catalogue, or `default` (cancel: back to the free short period). */
  plan: string;
  idempotencyKey: string;
  /** Who asks: `admin`, `account:<id>`, `cli`. */
  actor: string;
}

export interface PlanChange {
  id: string;
  namespaceId: string;
  action: 'set' | 'cancel';
  fromPlan: string;
  toPlan: string;
  retentionDays: number;
  day: string;
  chargedMicro: bigint;
  actor: string;
  createdAt: Date;
  /** True when this is the answer to an earlier request with the same idempotency key (nothing changed now). */
  replayed: boolean;
}

export interface PlanView {
  namespaceId: string;
  plan: string;
  retentionDays: number;
  graceUntil: Date | null;
  paidThrough: Date | null;
  changes: PlanChange[];
}

type ChangeRow = {
  id: string;
  namespace_id: string;
  idem_key: string;
  action: 'set' | 'cancel';
  from_plan: string;
  to_plan: string;
  retention_days: number;
  day: string;
  charged_micro: bigint;
  actor: string;
  created_at: Date;
};

const toChange = (r: ChangeRow, replayed: boolean): PlanChange => ({
  id: r.id,
  namespaceId: r.namespace_id,
  action: r.action,
  fromPlan: r.from_plan,
  toPlan: r.to_plan,
  retentionDays: r.retention_days,
  day: r.day,
  chargedMicro: BigInt(r.charged_micro),
  actor: r.actor,
  createdAt: r.created_at,
  replayed,
});

const changeColumns = `id, namespace_id, idem_key, action, from_plan, to_plan, retention_days, day::text as day,
  charged_micro, actor, created_at`;

const IDEM_KEY = /^[A-Za-z0-9:_.-]{1,128}$/;

export class SpacePlansService {
  private readonly runs = new RetentionRepository();

  constructor(
    private readonly deps: {
      pool: Pool;
      ledger: Pick<LedgerService, 'applyInTransaction' | 'ops'>;
      audit: { append(input: AppendInput, tx: PoolClient): Promise<unknown> };
      billing: Pick<StorageBillingService, 'chargeNamespace' | 'storedBytes'>;
      policies: Pick<RetentionPolicies, 'forget'>;
      clock: Clock;
      options: { plans: SpacePlanCatalogue; defaultRetentionDays: number };
    },
  ) {}

  catalogue(): SpacePlan[] {
    return [...this.deps.options.plans.values()];
  }

  async show(namespaceId: string): Promise<PlanView> {
    const ns = await this.deps.pool.query<{
      retention_plan: string;
      retention_days: number;
      retention_grace_until: Date | null;
      extended_retention_until: Date | null;
    }>(
      `select retention_plan, retention_days, retention_grace_until, extended_retention_until from namespaces
       where id = $1`,
      [namespaceId],
    );
    const row = ns.rows[0];
    if (!row) throw new AppError('namespace_not_found', `no namespace ${namespaceId}`);
    const changes = await this.deps.pool.query<ChangeRow>(
      `select ${changeColumns} from space_plan_changes where namespace_id = $1 order by created_at desc, id limit 100`,
      [namespaceId],
    );
    return {
      namespaceId,
      plan: row.retention_plan,
      retentionDays: row.retention_days,
      graceUntil: row.retention_grace_until,
      paidThrough: row.extended_retention_until,
      changes: changes.rows.map((r) => toChange(r, false)),
    };
  }

  /** Chooses, changes (`plan` of the catalogue) or cancels (`default`) the plan of a namespace. */
  async change(req: PlanChangeRequest): Promise<PlanChange> {
    const plan = req.plan === 'default' ? undefined : this.deps.options.plans.get(req.plan);
    if (req.plan !== 'default' && !plan)
      throw new AppError(
        'invalid_request',
        `unknown plan "${req.plan}"; choose one of ${[...this.deps.options.plans.keys()].join(', ')}`,
        { param: 'plan' },
      );
    if (typeof req.idempotencyKey !== 'string' || !IDEM_KEY.test(req.idempotencyKey))
      throw new AppError('invalid_request', 'idempotencyKey must be 1-128 of A-Z a-z 0-9 : _ . -', {
        param: 'idempotencyKey',
      });
    const earlier = await this.findChange(this.deps.pool, req);
    if (earlier) return earlier;
    const day = dayOf(this.deps.clock.now());
    // A daily charge decided but not yet made (or cut short by a crash) is finished first, under the old plan,
    // so that today's row says what today has been paid.
    if ((await this.dayRow(this.deps.pool, req.namespaceId, day))?.status === 'pending')
      await this.deps.billing.chargeNamespace(req.namespaceId);
    // MongoDB cannot be read inside the PostgreSQL transaction: the size is measured just before it.
    const bytes = plan ? await this.deps.billing.storedBytes(req.namespaceId) : 0;
    const change = await withTransaction(this.deps.pool, (tx) => this.applyChange(tx, req, plan, day, bytes));
    this.deps.policies.forget(req.namespaceId);
    return change;
  }

  private async applyChange(
    tx: PoolClient,
    req: PlanChangeRequest,
    plan: SpacePlan | undefined,
    day: string,
    bytes: number,
  ): Promise<PlanChange> {
    const ns = await tx.query<{ retention_plan: string; retention_grace_until: Date | null }>(
      'select retention_plan, retention_grace_until from namespaces where id = $1 for update',
      [req.namespaceId],
    );
    const current = ns.rows[0];
    if (!current) throw new AppError('namespace_not_found', `no namespace ${req.namespaceId}`);
    // Under the namespace's row lock: a concurrent request with the same key committed first.
    const raced = await this.findChange(tx, req);
    if (raced) return raced;
    const today = await this.dayRow(tx, req.namespaceId, day, true);
    if (today?.status === 'pending')
      throw new AppError('store_unavailable', "today's storage charge is being made; retry", {
        param: 'plan',
      });
    // What today has been paid already counts: an upgrade pays the difference, a downgrade or cancel no refund.
    const paid = today && (today.status === 'charged' || today.status === 'free') ? today.amount : 0n;
    let charged = 0n;
    if (plan) {
      const full = dayChargeMicro(bytes, plan);
      charged = full > paid ? full - paid : 0n;
      if (charged > 0n)
        await this.charge(
          tx,
          this.deps.ledger.ops.storageCharge(req.namespaceId, charged, `space-plan:${req.idempotencyKey}`),
        );
      const amount = paid + charged;
      await tx.query(
        `insert into storage_charge_days (namespace_id, day, plan, bytes, amount, status) values ($1, $2, $3, $4, $5, $6)
         on conflict (namespace_id, day) do update set plan = excluded.plan, bytes = excluded.bytes,
           amount = excluded.amount, status = excluded.status`,
        [req.namespaceId, day, plan.id, bytes, amount, amount === 0n ? 'free' : 'charged'],
      );
    }
    const days = plan?.retentionDays ?? this.deps.options.defaultRetentionDays;
    const toPlan = plan?.id ?? 'default';
    await tx.query(
      `update namespaces set retention_plan = $2, retention_days = $3, retention_grace_until = null,
         extended_retention_until = case when $4::bool then $5::date + 1 else null end where id = $1`,
      [req.namespaceId, toPlan, days, plan !== undefined, day],
    );
    const id = randomUUID();
    const action = plan ? 'set' : 'cancel';
    const body = {
      plan: toPlan,
      days,
      from: current.retention_plan,
      chargedMicro: charged.toString(),
      changeId: id,
    };
    await tx.query(
      `insert into retention_plan_events (namespace_id, kind, body) values ($1, 'plan_set', $2)`,
      [req.namespaceId, JSON.stringify(body)],
    );
    if (current.retention_grace_until)
      await tx.query(
        `insert into retention_plan_events (namespace_id, kind, body) values ($1, 'grace_cleared', $2)`,
        [req.namespaceId, JSON.stringify({ day, changeId: id })],
      );
    const r = await tx.query<ChangeRow>(
      `insert into space_plan_changes (id, namespace_id, idem_key, action, from_plan, to_plan, retention_days, day,
         charged_micro, actor) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning ${changeColumns}`,
      [
        id,
        req.namespaceId,
        req.idempotencyKey,
        action,
        current.retention_plan,
        toPlan,
        days,
        day,
        charged,
        req.actor,
      ],
    );
    await this.deps.audit.append(
      {
        actor: req.actor,
        action: plan ? 'space_plan.set' : 'space_plan.cancel',
        target: `namespace:${req.namespaceId}`,
        body: { ...body, idempotencyKey: req.idempotencyKey, day },
      },
      tx,
    );
    return toChange(r.rows[0]!, false);
  }

  private async charge(tx: PoolClient, op: LedgerOp): Promise<OpResult> {
    const [outcome] = await this.deps.ledger.applyInTransaction(tx, [op]);
    // Refused (402 insufficient_credits): the throw rolls the whole change back.
    if (!outcome!.ok) throw outcome!.error;
    return outcome!.value;
  }

  /** The earlier change made under this key: the same request replays, another one is a conflict. */
  private async findChange(db: Pick<Pool, 'query'>, req: PlanChangeRequest): Promise<PlanChange | undefined> {
    const r = await db.query<ChangeRow>(
      `select ${changeColumns} from space_plan_changes where namespace_id = $1 and idem_key = $2`,
      [req.namespaceId, req.idempotencyKey],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    if (row.to_plan !== req.plan)
      throw new AppError(
        'idempotency_conflict',
        `idempotencyKey ${req.idempotencyKey} was already used to move to plan ${row.to_plan}; send a new key`,
        { param: 'idempotencyKey' },
      );
    return toChange(row, true);
  }

  private async dayRow(
    db: Pick<Pool, 'query'>,
    namespaceId: string,
    day: string,
    lock = false,
  ): Promise<{ amount: bigint; status: string } | undefined> {
    const r = await db.query<{ amount: bigint; status: string }>(
      `select amount, status from storage_charge_days where namespace_id = $1 and day = $2${lock ? ' for update' : ''}`,
      [namespaceId, day],
    );
    return r.rows[0] ? { amount: BigInt(r.rows[0].amount), status: r.rows[0].status } : undefined;
  }

  /** Retention runs of a namespace (a receipt once `done`): cut-off, counts, range, files with SHA-256. */
  receipts(namespaceId: string): Promise<RetentionRun[]> {
    return this.runs.listRuns(this.deps.pool, namespaceId);
  }
}
