// Account token format: generation, parsing, and that only a peppered hash of the secret is produced.
import { describe, expect, it } from 'vitest';
import { generateAccountToken, parseAccountToken } from './account-token.js';
import { secretMatches } from './api-key.js';

const pepper = 'a-test-pepper-of-some-length';

describe('account tokens', () => {
  it('round-trips: the parsed secret matches the stored hash, and nothing else does', () => {
    const t = generateAccountToken(pepper);
    expect(t.plaintext).toMatch(/^rtya_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    const parsed = parseAccountToken(t.plaintext)!;
    expect(parsed.prefix).toBe(t.prefix);
    expect(secretMatches(parsed.secret, pepper, t.secretHash)).toBe(true);
    expect(secretMatches(parsed.secret, 'another-pepper-value', t.secretHash)).toBe(false);
    expect(t.secretHash.toString('hex')).not.toContain(Buffer.from(parsed.secret).toString('hex'));
  });

  it('refuses API keys and malformed tokens', () => {
    expect(parseAccountToken(`rty_${'a'.repeat(12)}_${'b'.repeat(43)}`)).toBeUndefined();
    expect(parseAccountToken(`rtya_${'A'.repeat(12)}_${'b'.repeat(43)}`)).toBeUndefined();
    expect(parseAccountToken(`rtya_${'a'.repeat(12)}_${'b'.repeat(42)}`)).toBeUndefined();
    expect(parseAccountToken('')).toBeUndefined();
  });

  it('generates distinct tokens', () => {
    const seen = new Set(Array.from({ length: 50 }, () => generateAccountToken(pepper).plaintext));
    expect(seen.size).toBe(50);
  });
});
