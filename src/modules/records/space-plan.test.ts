// The Space-plan catalogue from RECORDS_SPACE_PLANS (parsed by the config) and the price of a day on a plan.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/config.js';
import { dayChargeMicro, spacePlanCatalogue } from './space-plan.js';

describe('Space-plan catalogue', () => {
  it('is the built-in plans when RECORDS_SPACE_PLANS is empty, or exactly the configured ones', () => {
    expect([...spacePlanCatalogue(loadConfig({}).RECORDS_SPACE_PLANS).keys()]).toEqual([
      'space-30',
      'space-90',
      'space-365',
    ]);
    const c = loadConfig({
      RECORDS_SPACE_PLANS: JSON.stringify({
        archive: { retentionDays: 730, priceMicroPerGbDay: 5, minMicroPerDay: 0 },
      }),
    });
    expect([...spacePlanCatalogue(c.RECORDS_SPACE_PLANS).values()]).toEqual([
      { id: 'archive', retentionDays: 730, priceMicroPerGbDay: 5n, minMicroPerDay: 0n },
    ]);
  });

  it('refuses a bad catalogue at start, naming the variable and what is wrong', () => {
    expect(() => loadConfig({ RECORDS_SPACE_PLANS: '{not json' })).toThrow(
      /RECORDS_SPACE_PLANS: a JSON object of plans/,
    );
    expect(() =>
      loadConfig({
        RECORDS_SPACE_PLANS:
          '{"default": {"retentionDays": 9, "priceMicroPerGbDay": 1, "minMicroPerDay": 1}}',
      }),
    ).toThrow(/RECORDS_SPACE_PLANS.*reserved/s);
    expect(() =>
      loadConfig({
        RECORDS_SPACE_PLANS:
          '{"Big Plan": {"retentionDays": 9, "priceMicroPerGbDay": 1, "minMicroPerDay": 1}}',
      }),
    ).toThrow(/RECORDS_SPACE_PLANS\.Big Plan: a plan id is 1-40/);
    expect(() =>
      loadConfig({
        RECORDS_SPACE_PLANS: '{"p": {"retentionDays": 0, "priceMicroPerGbDay": 1, "minMicroPerDay": 1}}',
      }),
    ).toThrow(/RECORDS_SPACE_PLANS\.p\.retentionDays/);
    expect(() =>
      loadConfig({
        RECORDS_SPACE_PLANS: '{"p": {"retentionDays": 9, "priceMicroPerGbDay": 1.5, "minMicroPerDay": 1}}',
      }),
    ).toThrow(/priceMicroPerGbDay/);
  });

  it('prices a day as the storage price, never below the daily minimum (integer micro-credits, rounded up)', () => {
    const plan = { id: 'p', retentionDays: 30, priceMicroPerGbDay: 20_000n, minMicroPerDay: 10_000n };
    expect(dayChargeMicro(0, plan)).toBe(10_000n);
    expect(dayChargeMicro(1_000_000_000, plan)).toBe(20_000n);
    expect(dayChargeMicro(1_000_000_001, plan)).toBe(20_001n);
    expect(dayChargeMicro(10, { ...plan, minMicroPerDay: 0n })).toBe(1n);
  });
});
