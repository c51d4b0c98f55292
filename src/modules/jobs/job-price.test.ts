// A job's cost from its price: integer micro-credits, rounded up once per job; the flat price reproduces the
// old per-token charge.
import { describe, expect, it } from 'vitest';
import { costMicro, flatPrice, reservationMicro } from './job-price.js';

const price = { version: 4, inputMicroPer1kTokens: 1234, outputMicroPer1kTokens: 5678 };

describe('job price', () => {
  it('charges ceil((in × input + out × output) / 1000), once per job', () => {
    // 10 × 1234 + 3 × 5678 = 29,374 → 29.374 → 30
    expect(costMicro(price, 10, 3)).toBe(30n);
    // exact thousands are not rounded up
    expect(costMicro({ ...price, inputMicroPer1kTokens: 1000, outputMicroPer1kTokens: 2000 }, 3, 1)).toBe(5n);
    // one priced token costs at least one micro-credit; no tokens cost nothing
    expect(costMicro(price, 1, 0)).toBe(2n);
    expect(costMicro({ ...price, inputMicroPer1kTokens: 1 }, 1, 0)).toBe(1n);
    expect(costMicro(price, 0, 0)).toBe(0n);
    // large counts stay exact (no floating point)
    expect(costMicro({ ...price, outputMicroPer1kTokens: 1e12 }, 0, 2 ** 31 - 1)).toBe(
      (BigInt(2 ** 31 - 1) * 10n ** 12n) / 1000n,
    );
  });

  it('input and output are priced apart', () => {
    expect(costMicro(price, 1000, 0)).toBe(1234n);
    expect(costMicro(price, 0, 1000)).toBe(5678n);
  });

  it('the reservation is the cost at the bounds, so a bounded charge never exceeds it', () => {
    const hold = reservationMicro(price, 40, 16);
    for (let i = 0; i <= 40; i += 7)
      for (let o = 0; o <= 16; o += 3) expect(costMicro(price, i, o) <= hold).toBe(true);
    expect(hold).toBe(costMicro(price, 40, 16));
  });

  it('the flat price is the per-token price on every token', () => {
    const flat = flatPrice(20n);
    expect(flat).toEqual({ version: 0, inputMicroPer1kTokens: 20_000, outputMicroPer1kTokens: 20_000 });
    expect(costMicro(flat, 10, 3)).toBe(13n * 20n);
  });
});
