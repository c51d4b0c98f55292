// What a job costs (pure): the reservation and the charge from the job's price (input and output micro-credits
// per 1,000 tokens, fixed at submit), in integer micro-credits.
//
// Rounding: a job's cost is ceil((prompt tokens × input price + output tokens × output price) / 1000), once per
// job over the sum (never per token, never fractional): at most 1 micro-credit above the exact amount, and a job
// with any priced token costs at least 1. The reservation is the same formula at the bounds, so a bounded charge
// never exceeds its hold.
import type { Environment } from '../../config/vocabulary.js';
import type { JobPrice } from '../routing/index.js';

export type { JobPrice } from '../routing/index.js';

/** Where a submit gets the price in force for a job (the network config's price table, held in memory). */
export interface PriceQuoter {
  quote(model: string, environment: Environment, subcloud: string | null): Promise<JobPrice>;
}

/** One price per token for input and output alike (PRICE_PER_TOKEN_MICRO): the table's fallback. */
export function flatPrice(perTokenMicro: bigint, version = 0): JobPrice {
  const per1k = Number(perTokenMicro * 1000n);
  return { version, inputMicroPer1kTokens: per1k, outputMicroPer1kTokens: per1k };
}

/** ceil((tokensIn × input + tokensOut × output) / 1000) micro-credits. */
export function costMicro(price: JobPrice, tokensIn: number, tokensOut: number): bigint {
  const exact =
    BigInt(tokensIn) * BigInt(price.inputMicroPer1kTokens) +
    BigInt(tokensOut) * BigInt(price.outputMicroPer1kTokens);
  return (exact + 999n) / 1000n;
}

/** The most a job may cost: its prompt bound and its whole output budget (every choice) at its price. */
export function reservationMicro(price: JobPrice, promptTokenBound: number, outputTokens: number): bigint {
  return costMicro(price, promptTokenBound, outputTokens);
}
