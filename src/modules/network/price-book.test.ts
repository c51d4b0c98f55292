// The in-memory price table: quoted without a read while fresh, refreshed in the background when older than the
// interval, waited for when twice as old, never moved back to an older version, kept when a read fails.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { testLog } from '../../../test/harness.js';
import { PriceBook } from './price-book.js';

const flat = { inputMicroPer1kTokens: 20_000, outputMicroPer1kTokens: 20_000 };
const version = (v: number, input: number) => ({
  version: v,
  body: { prices: { default: { inputMicroPer1kTokens: input, outputMicroPer1kTokens: 1 } } },
});

afterEach(() => vi.useRealTimers());

describe('price book', () => {
  it('serves from memory, refreshes after the interval, waits when twice as old', async () => {
    vi.useFakeTimers({ now: 0 });
    let latest: ReturnType<typeof version> | undefined;
    const reads = vi.fn(() => Promise.resolve(latest));
    const book = new PriceBook({ latest: reads, flat, refreshMs: 1_000, log: testLog });
    // Nothing published: version 0 at the flat price.
    expect(await book.quote('m', 'testnet', null)).toEqual({ version: 0, ...flat });
    latest = version(1, 100);
    await book.quote('m', 'testnet', null);
    expect(reads).toHaveBeenCalledTimes(1); // fresh: no read
    vi.setSystemTime(1_500);
    // Older than the interval: this quote is the old table, a read starts behind it.
    expect((await book.quote('m', 'testnet', null)).version).toBe(0);
    await vi.waitFor(() => expect(reads).toHaveBeenCalledTimes(2));
    expect(await book.quote('m', 'testnet', null)).toMatchObject({ version: 1, inputMicroPer1kTokens: 100 });
    latest = version(2, 200);
    vi.setSystemTime(1_500 + 2_000);
    // Twice as old: waited for, so the quote is the new version.
    expect(await book.quote('m', 'testnet', null)).toMatchObject({ version: 2, inputMicroPer1kTokens: 200 });
  });

  it('never goes back to an older version, keeps its table when a read fails, prices a bad stored table flat', async () => {
    let next: () => Promise<
      ReturnType<typeof version> | { version: number; body: Record<string, unknown> }
    > = () => Promise.resolve(version(5, 50));
    const book = new PriceBook({ latest: () => next(), flat, refreshMs: 1_000, log: testLog });
    expect((await book.refresh()).version).toBe(5);
    next = () => Promise.resolve(version(4, 40));
    expect((await book.refresh()).version).toBe(5);
    next = () => Promise.reject(new Error('connection refused'));
    expect(await book.quote('m', 'testnet', null)).toMatchObject({ version: 5, inputMicroPer1kTokens: 50 });
    expect((await book.refresh()).version).toBe(5);
    next = () =>
      Promise.resolve({ version: 6, body: { prices: { default: { inputMicroPer1kTokens: -1 } } } });
    expect(priceOfBook(await book.refresh())).toEqual({ version: 6, ...flat });
    const empty = new PriceBook({ latest: () => next(), flat, refreshMs: 1_000, log: testLog });
    next = () => Promise.reject(new Error('connection refused'));
    await expect(empty.quote('m', 'testnet', null)).rejects.toThrow('connection refused');
  });
});

function priceOfBook(t: { version: number; default: typeof flat }) {
  return { version: t.version, ...t.default };
}
