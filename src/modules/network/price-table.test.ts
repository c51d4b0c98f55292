// The price table of a config version: bad tables are refused naming the field; the most specific entry wins.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../platform/errors.js';
import { checkPriceSection, priceOf, priceTableOf } from './price-table.js';

const flat = { inputMicroPer1kTokens: 20_000, outputMicroPer1kTokens: 20_000 };
const p = (i: number, o: number) => ({ inputMicroPer1kTokens: i, outputMicroPer1kTokens: o });

function refusal(section: unknown): { message: string; param: unknown } {
  try {
    checkPriceSection(section);
  } catch (err) {
    if (isAppError(err, 'invalid_request')) return { message: err.message, param: err.details?.param };
    throw err;
  }
  throw new Error('the table was accepted');
}

describe('price table', () => {
  it('prices a model by its most specific entry: Subcloud and environment, Subcloud, environment, model, default', () => {
    const t = priceTableOf(
      7,
      {
        default: p(9, 9),
        models: [
          { model: 'm', ...p(1, 2) },
          { model: 'm', environment: 'testnet', ...p(3, 4) },
          { model: 'm', subcloud: 'sc-1', ...p(5, 6) },
          { model: 'm', subcloud: 'sc-1', environment: 'mainnet', ...p(7, 8) },
        ],
      },
      flat,
    );
    expect(priceOf(t, 'm', 'mainnet', null)).toEqual({ version: 7, ...p(1, 2) });
    expect(priceOf(t, 'm', 'testnet', null)).toEqual({ version: 7, ...p(3, 4) });
    expect(priceOf(t, 'm', 'testnet', 'sc-1')).toEqual({ version: 7, ...p(5, 6) });
    expect(priceOf(t, 'm', 'mainnet', 'sc-1')).toEqual({ version: 7, ...p(7, 8) });
    expect(priceOf(t, 'm', 'mainnet', 'sc-2')).toEqual({ version: 7, ...p(1, 2) });
    expect(priceOf(t, 'other', 'testnet', 'sc-1')).toEqual({ version: 7, ...p(9, 9) });
  });

  it('a config without prices charges the flat price for every model, under its version', () => {
    expect(priceOf(priceTableOf(3, undefined, flat), 'any', 'testnet', null)).toEqual({
      version: 3,
      ...flat,
    });
    expect(() => checkPriceSection(undefined)).not.toThrow();
    expect(() => checkPriceSection({ default: p(0, 0) })).not.toThrow();
  });

  it.each([
    [{ default: p(-1, 1) }, 'body.prices.default.inputMicroPer1kTokens', /integer from 0/],
    [{ default: p(1, 1.5) }, 'body.prices.default.outputMicroPer1kTokens', /integer from 0/],
    [{ default: p(1, 1e13) }, 'body.prices.default.outputMicroPer1kTokens', /integer from 0/],
    [
      { default: { inputMicroPer1kTokens: 1, outputMicroPer1kTokens: '2' } },
      'body.prices.default.outputMicroPer1kTokens',
      /integer from 0/,
    ],
    [{ default: { ...p(1, 1), currency: 'usd' } }, 'body.prices.default.currency', /not a price table key/],
    [{ default: p(1, 1), extra: true }, 'body.prices.extra', /not a price table key.*default, models/],
    [{ models: [] }, 'body.prices.default', /is required/],
    [
      {
        default: p(1, 1),
        models: [
          { model: 'a', ...p(1, 1) },
          { model: 'b', ...p(2, -3) },
        ],
      },
      'body.prices.models[1].outputMicroPer1kTokens',
      /integer from 0/,
    ],
    [
      { default: p(1, 1), models: [{ model: 'a', region: 'eu', ...p(1, 1) }] },
      'body.prices.models[0].region',
      /not a price table key/,
    ],
    [
      { default: p(1, 1), models: [{ model: 'a', environment: 'devnet', ...p(1, 1) }] },
      'body.prices.models[0].environment',
      /testnet, mainnet/,
    ],
    [
      { default: p(1, 1), models: [{ model: ' bad', ...p(1, 1) }] },
      'body.prices.models[0].model',
      /model name/,
    ],
    [
      {
        default: p(1, 1),
        models: [
          { model: 'a', ...p(1, 1) },
          { model: 'a', ...p(2, 2) },
        ],
      },
      'body.prices.models[1]',
      /repeats models\[0\]/,
    ],
    [[1], 'body.prices', /must be an object/],
    [{ default: p(1, 1), models: {} }, 'body.prices.models', /array of price entries/],
  ])('refuses %j naming %s', (section, field, why) => {
    const r = refusal(section);
    expect(r.param).toBe(field);
    expect(r.message.startsWith(`${field} `)).toBe(true);
    expect(r.message).toMatch(why);
  });
});
