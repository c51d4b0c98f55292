// Node message authentication for the gateway and the node HTTP routes: signing (what an agent does) and
// verification with the binding check (node registered with an account).
import { randomBytes } from 'node:crypto';
import type { LocalAccount } from 'viem/accounts';
import { normalizeAddress } from '../../config/vocabulary.js';
import { AppError, isAppError } from '../../platform/errors.js';
import type { RegisteredNode } from '../nodes/index.js';
import { eip191 } from './eip191.js';
import {
  NODE_MESSAGE_VERSION,
  signingText,
  verifyNodeMessage,
  type NonceStore,
  type SignedNodeMessage,
} from './node-message.js';
import type { RejectReason } from './node-protocol.js';

/** What authenticating a node message needs: the clock skew allowed and the registry lookup of a node. */
export interface NodeAuthDeps {
  config: { NODE_MESSAGE_MAX_SKEW_MS: number };
  nodes: { admin: { findNode(address: string): Promise<RegisteredNode | undefined> } };
}

/** A node's own key for signing with libsecp256k1 (what agents use; a viem account signs in pure JS). */
export class NodeKey {
  readonly address: string;
  constructor(readonly privateKey: `0x${string}`) {
    this.address = eip191.address(privateKey);
  }
}

/** Signs a node message with the node's key (a fresh nonce; `ts` defaults to now). */
export async function signNodeMessage(
  account: LocalAccount | NodeKey,
  type: string,
  body: unknown,
  opts: { ts?: number; nonce?: string } = {},
): Promise<SignedNodeMessage> {
  const unsigned = {
    v: NODE_MESSAGE_VERSION as typeof NODE_MESSAGE_VERSION,
    type,
    node: normalizeAddress(account.address),
    ts: opts.ts ?? Date.now(),
    nonce: opts.nonce ?? randomBytes(16).toString('base64url'),
    body,
  };
  const text = signingText(unsigned);
  const sig =
    account instanceof NodeKey
      ? await eip191.sign(account.privateKey, text)
      : await account.signMessage({ message: text });
  return { ...unsigned, sig };
}

/** The reason label of a refused node message (for error frames, 401 bodies and the metric). */
export function rejectReasonOf(err: unknown): RejectReason {
  if (isAppError(err)) {
    const r = err.details?.reason;
    if (r === 'bad_signature' || r === 'stale_timestamp' || r === 'replayed_nonce') return r;
    if (err.code === 'node_not_registered') return 'node_not_registered';
  }
  return 'malformed';
}

/**
 * Verifies a signed node message of the expected type and checks that the node is bound to an account.
 * Throws AppError: invalid_request (malformed), unauthorized (reason in details), node_not_registered.
 */
export async function authenticateNodeMessage(
  b: NodeAuthDeps,
  nonces: NonceStore,
  raw: unknown,
  expectedType: string,
): Promise<{ message: SignedNodeMessage; node: RegisteredNode }> {
  let node: RegisteredNode | undefined;
  const message = await verifyNodeMessage(raw, {
    nowMs: Date.now(),
    maxSkewMs: b.config.NODE_MESSAGE_MAX_SKEW_MS,
    nonces,
    // Type and binding before the nonce: an unbound key's valid signature stores nothing.
    authorize: async (m) => {
      if (m.type !== expectedType)
        throw new AppError('invalid_request', `expected a ${expectedType} message, got ${m.type}`);
      const found = await b.nodes.admin.findNode(m.node);
      if (!found || found.accountId === null || found.status === 'retired')
        throw new AppError('node_not_registered', `node ${m.node} is not registered (bound to an account)`, {
          reason: 'node_not_registered',
        });
      node = found;
    },
  });
  return { message, node: node! };
}
