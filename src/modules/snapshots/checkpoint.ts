// Signed checkpoints (pure): what each snapshot commits to (CID, predecessor, sequence, section roots, audit head, ledger
// totals, link to the previous checkpoint), its signed bytes, and ECDSA secp256k1 / SHA-256 signatures by the network
// key, checkable with node:crypto alone (docs/snapshot-format.md, "Checkpoints").
import {
  createECDH,
  createHash,
  createPrivateKey,
  createPublicKey,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import * as dagCbor from '@ipld/dag-cbor';
import { AppError } from '../../platform/errors.js';
import type { LedgerTotals, Manifest } from './manifest.js';

export const CHECKPOINT_TYPE = 'rty-snapshot-checkpoint/1';

export interface Checkpoint {
  type: typeof CHECKPOINT_TYPE;
  /** The signer's public key: uncompressed secp256k1 point, hex (04 || x || y). */
  key: string;
  seq: number;
  cid: string;
  prev: string | null;
  createdAt: string;
  roots: Record<string, string>;
  auditHead: { seq: number; hash: string } | null;
  ledger: LedgerTotals;
  /** sha256 of the previous checkpoint's signed bytes (hex); null for the first. */
  prevCheckpoint: string | null;
}

export interface SignedCheckpoint {
  checkpoint: Checkpoint;
  /** ECDSA secp256k1 over SHA-256 of checkpointBytes(checkpoint), r || s (64 bytes), hex. */
  signature: string;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** The signed bytes: the DAG-CBOR encoding of the checkpoint (canonical: map keys sorted, minimal integers). */
export function checkpointBytes(c: Checkpoint): Uint8Array {
  return dagCbor.encode(c);
}

/** The id of a checkpoint: sha256 of its signed bytes, hex (what the next checkpoint links to). */
export function checkpointHash(c: Checkpoint): string {
  return createHash('sha256').update(checkpointBytes(c)).digest('hex');
}

export function checkpointOf(
  cid: string,
  m: Manifest,
  key: string,
  ledger: LedgerTotals,
  prevCheckpoint: string | null,
): Checkpoint {
  return {
    type: CHECKPOINT_TYPE,
    key,
    seq: m.seq!,
    cid,
    prev: m.prev?.toString() ?? null,
    createdAt: m.createdAt,
    roots: Object.fromEntries(Object.entries(m.roots).map(([k, v]) => [k, hex(v)])),
    auditHead: m.auditHead ? { seq: m.auditHead.seq, hash: hex(m.auditHead.hash) } : null,
    ledger,
    prevCheckpoint,
  };
}

const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

function publicKeyObject(pubHex: string): KeyObject {
  const pub = Buffer.from(pubHex, 'hex');
  if (pub.length !== 65 || pub[0] !== 0x04)
    throw new AppError(
      'invalid_request',
      'a network public key is an uncompressed secp256k1 point (130 hex digits, 04…)',
    );
  return createPublicKey({
    key: { kty: 'EC', crv: 'secp256k1', x: b64u(pub.subarray(1, 33)), y: b64u(pub.subarray(33)) },
    format: 'jwk',
  });
}

/** Signs with the network key (the same secp256k1 key that signs config versions). */
export class CheckpointSigner {
  readonly publicKey: string;
  private readonly key: KeyObject;

  constructor(privateKeyHex: string) {
    const d = Buffer.from(privateKeyHex.replace(/^0x/, ''), 'hex');
    if (d.length !== 32)
      throw new AppError('invalid_request', 'the network signing key must be 32 bytes of hex');
    const ecdh = createECDH('secp256k1');
    ecdh.setPrivateKey(d);
    const pub = ecdh.getPublicKey();
    this.publicKey = pub.toString('hex');
    this.key = createPrivateKey({
      key: {
        kty: 'EC',
        crv: 'secp256k1',
        d: b64u(d),
        x: b64u(pub.subarray(1, 33)),
        y: b64u(pub.subarray(33)),
      },
      format: 'jwk',
    });
  }

  sign(c: Checkpoint): SignedCheckpoint {
    const sig = sign('sha256', checkpointBytes(c), { key: this.key, dsaEncoding: 'ieee-p1363' });
    return { checkpoint: c, signature: sig.toString('hex') };
  }
}

/** Whether the checkpoint is signed by `trustedKey` (hex public key) and names that key. */
export function checkSignature(s: SignedCheckpoint, trustedKey: string): boolean {
  if (s.checkpoint.key !== trustedKey || !/^[0-9a-f]{128}$/.test(s.signature)) return false;
  try {
    return verify(
      'sha256',
      checkpointBytes(s.checkpoint),
      { key: publicKeyObject(trustedKey), dsaEncoding: 'ieee-p1363' },
      Buffer.from(s.signature, 'hex'),
    );
  } catch {
    return false;
  }
}

/** Parses one log line; a malformed line is tampering (the log is only ever appended by the writer). */
export function parseCheckpointLine(line: string, index: number): SignedCheckpoint {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new AppError('integrity_failed', `checkpoint log line ${index + 1} is not JSON`);
  }
  const s = v as SignedCheckpoint;
  if (
    typeof s !== 'object' ||
    s === null ||
    typeof s.signature !== 'string' ||
    typeof s.checkpoint !== 'object' ||
    s.checkpoint?.type !== CHECKPOINT_TYPE
  )
    throw new AppError('integrity_failed', `checkpoint log line ${index + 1} is not a signed checkpoint`);
  return s;
}
