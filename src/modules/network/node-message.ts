// Signed node messages: every message a node sends is an EIP-191 personal signature over the canonical
// encoding of {v, type, node, ts, nonce, body}; verification checks the signer, the clock skew and replay.
import { z } from 'zod';
import { addressSchema } from '../../config/vocabulary.js';
import { AppError } from '../../platform/errors.js';
import { canonicalJson } from './canonical-json.js';
import { eip191 } from './eip191.js';

export const NODE_MESSAGE_VERSION = 1;

export const signedNodeMessageSchema = z.object({
  v: z.literal(NODE_MESSAGE_VERSION),
  type: z.string().regex(/^[a-z][a-z0-9_.]{0,63}$/),
  node: addressSchema,
  ts: z.number().int().positive(),
  nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  body: z.unknown(),
  sig: z.string().regex(/^0x[0-9a-fA-F]{130}$/, 'a 65-byte hex signature'),
});

export type SignedNodeMessage = z.infer<typeof signedNodeMessageSchema>;
export type UnsignedNodeMessage = Omit<SignedNodeMessage, 'sig'>;

/** The exact text a node signs (EIP-191 prefixes it with "\x19Ethereum Signed Message:\n" + length). */
export function signingText(m: UnsignedNodeMessage): string {
  return `rty-node-message:${canonicalJson({ v: m.v, type: m.type, node: m.node, ts: m.ts, nonce: m.nonce, body: m.body })}`;
}

/** Remembers nonces for at least the skew window; returns false when the nonce was seen before. */
export interface NonceStore {
  claim(node: string, nonce: string, ttlMs: number): Promise<boolean>;
}

export interface VerifyOptions {
  nowMs: number;
  maxSkewMs: number;
  nonces: NonceStore;
  /**
   * Runs after the signature checks out and before the nonce is claimed (e.g. the binding check): a validly
   * signed message from a key that may not talk to us is refused without leaving a nonce in the store.
   */
  authorize?: (m: SignedNodeMessage) => Promise<void>;
}

/**
 * Parses and verifies a node message. Order matters: the cheap checks (shape, clock) run first, the signature
 * next, and the nonce is claimed only for a message that is otherwise valid, so forged traffic cannot burn nonces.
 */
export async function verifyNodeMessage(raw: unknown, opts: VerifyOptions): Promise<SignedNodeMessage> {
  const parsed = signedNodeMessageSchema.safeParse(raw);
  if (!parsed.success) {
    throw new AppError(
      'invalid_request',
      `malformed node message: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  const m = parsed.data;
  if (Math.abs(opts.nowMs - m.ts) > opts.maxSkewMs) {
    throw new AppError(
      'unauthorized',
      `stale or future timestamp: ${m.ts} is more than ${opts.maxSkewMs} ms from server time`,
      { reason: 'stale_timestamp' },
    );
  }
  let signer: string;
  try {
    signer = await eip191.recover(signingText(m), m.sig);
  } catch {
    throw new AppError('unauthorized', 'bad signature', { reason: 'bad_signature' });
  }
  if (signer !== m.node)
    throw new AppError('unauthorized', 'bad signature: signer is not the node', { reason: 'bad_signature' });
  if (opts.authorize) await opts.authorize(m);
  if (!(await opts.nonces.claim(m.node, m.nonce, opts.maxSkewMs * 2))) {
    throw new AppError('unauthorized', 'replayed nonce', { reason: 'replayed_nonce' });
  }
  return m;
}
