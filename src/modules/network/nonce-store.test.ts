// Unit tests of the per-session nonce window: a nonce is refused again for at least its TTL, forgotten
// after two, and memory is bounded by two generations.
import { describe, expect, it } from 'vitest';
import { SessionNonceWindow } from './nonce-store.js';

describe('SessionNonceWindow', () => {
  it('refuses a replay within the TTL (across one rotation) and forgets it after two TTLs', async () => {
    let now = 1_000;
    const w = new SessionNonceWindow(100, () => now);
    expect(await w.claim('n', 'a')).toBe(true);
    expect(await w.claim('n', 'a')).toBe(false);
    expect(await w.claim('m', 'a')).toBe(true); // per node
    now += 99;
    expect(await w.claim('n', 'a')).toBe(false);
    now += 2; // rotated once: 'a' is in the previous generation
    expect(await w.claim('n', 'a')).toBe(false);
    expect(await w.claim('n', 'b')).toBe(true);
    now += 100; // rotated twice since 'a': forgotten (its timestamp is outside the skew window by now)
    expect(await w.claim('n', 'a')).toBe(true);
    expect(w.size).toBe(2); // 'b' (previous) and 'a' (current)
    now += 1_000; // long idle: both generations dropped at once
    expect(await w.claim('n', 'b')).toBe(true);
    expect(w.size).toBe(1);
  });
});
