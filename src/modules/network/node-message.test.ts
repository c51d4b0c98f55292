// Unit tests of node message signing and verification (pure; the nonce store is a plain Set here because
// nonce storage is not under test: the Redis-backed store has its own integration test).
import { randomBytes } from 'node:crypto';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical-json.js';
import { signingText, verifyNodeMessage, type NonceStore, type UnsignedNodeMessage } from './node-message.js';

const account = privateKeyToAccount(generatePrivateKey());
const node = account.address.toLowerCase();

function nonceSet(): NonceStore {
  const seen = new Set<string>();
  return {
    claim: async (n, nonce) => (seen.has(`${n}:${nonce}`) ? false : (seen.add(`${n}:${nonce}`), true)),
  };
}

async function sign(m: UnsignedNodeMessage) {
  return { ...m, sig: await account.signMessage({ message: signingText(m) }) };
}

const base = (): UnsignedNodeMessage => ({
  v: 1,
  type: 'heartbeat',
  node,
  ts: 1_000_000,
  nonce: randomBytes(16).toString('hex'),
  body: { load: 1, models: ['m'] },
});
const opts = (nonces = nonceSet()) => ({ nowMs: 1_000_500, maxSkewMs: 30_000, nonces });

describe('node messages', () => {
  it('canonical JSON sorts keys at every depth and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2n }], c: undefined } })).toBe(
      '{"a":{"d":[1,{"y":"2","z":1}]},"b":1}',
    );
  });

  it('accepts a correctly signed message once and refuses its replay', async () => {
    const msg = await sign(base());
    const nonces = nonceSet();
    await expect(verifyNodeMessage(msg, opts(nonces))).resolves.toMatchObject({ node, type: 'heartbeat' });
    await expect(verifyNodeMessage(msg, opts(nonces))).rejects.toMatchObject({
      code: 'unauthorized',
      details: { reason: 'replayed_nonce' },
    });
  });

  it('refuses a changed body, another signer, a stale timestamp and malformed input', async () => {
    const msg = await sign(base());
    await expect(
      verifyNodeMessage({ ...msg, body: { load: 2, models: ['m'] } }, opts()),
    ).rejects.toMatchObject({ details: { reason: 'bad_signature' } });
    const other = privateKeyToAccount(generatePrivateKey());
    const forged = { ...base(), node: other.address.toLowerCase() };
    await expect(verifyNodeMessage({ ...forged, sig: msg.sig }, opts())).rejects.toMatchObject({
      details: { reason: 'bad_signature' },
    });
    const stale = await sign({ ...base(), ts: 1_000_500 - 31_000 });
    await expect(verifyNodeMessage(stale, opts())).rejects.toMatchObject({
      details: { reason: 'stale_timestamp' },
    });
    await expect(verifyNodeMessage({ ...msg, node: 'not-an-address' }, opts())).rejects.toMatchObject({
      code: 'invalid_request',
    });
    await expect(verifyNodeMessage('{"v":1}', opts())).rejects.toMatchObject({ code: 'invalid_request' });
  });
});
