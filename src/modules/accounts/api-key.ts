// API key format and hashing (pure): `rty_<prefix>_<secret>`; only the prefix and a peppered hash are stored.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const keyPattern = /^rty_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

export interface GeneratedKey {
  /** The full key, shown to the user once and never stored. */
  plaintext: string;
  prefix: string;
  secretHash: Buffer;
}

const prefixAlphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';

export function generateApiKey(pepper: string): GeneratedKey {
  const bytes = randomBytes(12);
  const prefix = Array.from(bytes, (b) => prefixAlphabet[b % prefixAlphabet.length]).join('');
  const secret = randomBytes(32).toString('base64url');
  return { plaintext: `rty_${prefix}_${secret}`, prefix, secretHash: hashSecret(secret, pepper) };
}

/** The secret has 256 bits of entropy, so a keyed SHA-256 suffices (no slow KDF needed). */
export function hashSecret(secret: string, pepper: string): Buffer {
  return createHmac('sha256', pepper).update(secret).digest();
}

export function parseApiKey(plaintext: string): { prefix: string; secret: string } | undefined {
  const m = keyPattern.exec(plaintext);
  return m ? { prefix: m[1]!, secret: m[2]! } : undefined;
}

export function secretMatches(secret: string, pepper: string, storedHash: Buffer): boolean {
  const h = hashSecret(secret, pepper);
  return h.length === storedHash.length && timingSafeEqual(h, storedHash);
}
