// The Space-plan catalogue (pure): paid retention plans with their period and price, from RECORDS_SPACE_PLANS or the
// built-in defaults, and what one day on a plan costs. `default` is no plan: the configured short period, free.
import { AppError } from '../../platform/errors.js';
import { storageChargeMicro } from './record.js';

export interface SpacePlan {
  id: string;
  retentionDays: number;
  /** Micro-credits per GB (10^9 bytes) stored per day. */
  priceMicroPerGbDay: bigint;
  /** The least a day on the plan costs, however little is stored (an empty namespace still pays it). */
  minMicroPerDay: bigint;
}

export type SpacePlanCatalogue = ReadonlyMap<string, SpacePlan>;

export interface SpacePlanSpec {
  retentionDays: number;
  priceMicroPerGbDay: number;
  minMicroPerDay: number;
}

export const DEFAULT_SPACE_PLANS: Readonly<Record<string, SpacePlanSpec>> = Object.freeze({
  'space-30': { retentionDays: 30, priceMicroPerGbDay: 20_000, minMicroPerDay: 10_000 },
  'space-90': { retentionDays: 90, priceMicroPerGbDay: 15_000, minMicroPerDay: 20_000 },
  'space-365': { retentionDays: 365, priceMicroPerGbDay: 10_000, minMicroPerDay: 50_000 },
});

/** The catalogue from the parsed RECORDS_SPACE_PLANS (undefined: the built-in plans). */
export function spacePlanCatalogue(specs?: Readonly<Record<string, SpacePlanSpec>>): SpacePlanCatalogue {
  const plans = new Map<string, SpacePlan>();
  for (const [id, s] of Object.entries(specs ?? DEFAULT_SPACE_PLANS)) {
    if (id === 'default') throw new AppError('invalid_request', 'plan id "default" is reserved');
    plans.set(id, {
      id,
      retentionDays: s.retentionDays,
      priceMicroPerGbDay: BigInt(s.priceMicroPerGbDay),
      minMicroPerDay: BigInt(s.minMicroPerDay),
    });
  }
  return plans;
}

/** One day on `plan` with `bytes` stored: the storage price, never less than the plan's daily minimum. */
export function dayChargeMicro(bytes: number, plan: SpacePlan): bigint {
  const storage = storageChargeMicro(bytes, plan.priceMicroPerGbDay);
  return storage > plan.minMicroPerDay ? storage : plan.minMicroPerDay;
}

export function renderSpacePlan(p: SpacePlan) {
  return {
    id: p.id,
    retentionDays: p.retentionDays,
    priceMicroPerGbDay: p.priceMicroPerGbDay.toString(),
    minMicroPerDay: p.minMicroPerDay.toString(),
  };
}
