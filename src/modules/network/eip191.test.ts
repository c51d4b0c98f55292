// Unit tests of EIP-191 signatures: libsecp256k1 (N-API) and the pure-JS fallback agree on sign and recover
// for many random keys and messages, and both refuse malformed or unrecoverable signatures.
import { randomBytes, randomInt } from 'node:crypto';
import { createRequire } from 'node:module';
import { generatePrivateKey } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import { eip191, eip191LoadError, jsEip191, nativeEip191 } from './eip191.js';

const native = nativeEip191(createRequire(import.meta.url)('secp256k1/bindings.js'));

function randomText(): string {
  // ASCII, multi-byte UTF-8 and JSON-ish text: the EIP-191 prefix carries the byte length, not the char count.
  const parts = [
    'rty-node-message:',
    '{"a":1}',
    'é',
    '日本',
    '🙂',
    randomBytes(randomInt(0, 64)).toString('base64'),
  ];
  return Array.from({ length: randomInt(1, 12) }, () => parts[randomInt(parts.length)]).join('');
}

describe('EIP-191 signatures', () => {
  it('this process runs the native binding from the prebuild (not the elliptic JS fallback)', () => {
    expect(eip191LoadError).toBeUndefined();
    expect(eip191.backend).toBe('native');
  });

  it('native and JS agree on address, signature bytes and recovered signer for random keys and texts', async () => {
    for (let i = 0; i < 60; i++) {
      const key = generatePrivateKey();
      const text = randomText();
      expect(native.address(key)).toBe(jsEip191.address(key));
      const sig = await native.sign(key, text);
      expect(sig).toBe(await jsEip191.sign(key, text));
      expect(await native.recover(text, sig)).toBe(native.address(key));
      expect(await jsEip191.recover(text, sig)).toBe(native.address(key));
      // Another text recovers some other address, the same one on both paths.
      const other = `${text}x`;
      const a = await native.recover(other, sig);
      expect(a).not.toBe(native.address(key));
      expect(a).toBe(await jsEip191.recover(other, sig));
    }
  });

  it('both accept v as 0/1 or 27/28 and agree on random (mostly invalid) r and s', async () => {
    const key = generatePrivateKey();
    const sig = await native.sign(key, 'hello');
    const v0 = `${sig.slice(0, 130)}${sig.endsWith('1b') ? '00' : '01'}`;
    expect(await native.recover('hello', v0)).toBe(native.address(key));
    expect(await jsEip191.recover('hello', v0)).toBe(native.address(key));
    for (let i = 0; i < 40; i++) {
      const s = `0x${randomBytes(64).toString('hex')}${i % 2 ? '1b' : '1c'}`;
      const [n, j] = await Promise.allSettled([native.recover('m', s), jsEip191.recover('m', s)]);
      expect(n.status).toBe(j.status);
      if (n.status === 'fulfilled' && j.status === 'fulfilled') expect(n.value).toBe(j.value);
    }
  });

  it('refuses malformed signatures on both paths', async () => {
    const key = generatePrivateKey();
    const good = await native.sign(key, 'hello');
    const n = 'f'.repeat(64); // r = s = 2^256 - 1 is above the group order
    const bad = [
      '',
      '0x',
      good.slice(0, 128),
      `${good}00`,
      `${good.slice(0, 130)}1d`, // v = 29
      `${good.slice(0, 130)}02`,
      `0x${'0'.repeat(128)}1b`, // r = s = 0
      `0x${n}${n}1b`,
      `${good.slice(0, 20)}zz${good.slice(22)}`,
    ];
    for (const s of bad) {
      await expect(native.recover('hello', s), s).rejects.toThrow();
      await expect(jsEip191.recover('hello', s), s).rejects.toThrow();
    }
  });
});
