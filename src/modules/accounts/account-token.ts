// Account token format (pure): `rtya_<prefix>_<secret>`; like API keys, only the prefix and a peppered hash are stored.
import { randomBytes } from 'node:crypto';
import { hashSecret } from './api-key.js';

const tokenPattern = /^rtya_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;
const prefixAlphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';

export interface GeneratedAccountToken {
  /** The full token, shown once and never stored. */
  plaintext: string;
  prefix: string;
  secretHash: Buffer;
}

export function generateAccountToken(pepper: string): GeneratedAccountToken {
  const prefix = Array.from(randomBytes(12), (b) => prefixAlphabet[b % prefixAlphabet.length]).join('');
  const secret = randomBytes(32).toString('base64url');
  return { plaintext: `rtya_${prefix}_${secret}`, prefix, secretHash: hashSecret(secret, pepper) };
}

export function parseAccountToken(plaintext: string): { prefix: string; secret: string } | undefined {
  const m = tokenPattern.exec(plaintext);
  return m ? { prefix: m[1]!, secret: m[2]! } : undefined;
}
