// The audit hash chain (pure): canonical entry bytes, hash = sha256(prev_hash || entry), and a streaming verifier
// that names the first removed, altered or reordered entry.
import { createHash } from 'node:crypto';
import * as dagCbor from '@ipld/dag-cbor';

export const GENESIS_HASH: Buffer = Buffer.alloc(32);

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

export interface AuditEntry {
  seq: bigint;
  /** Microseconds since the Unix epoch (PostgreSQL precision, exact). */
  atMicros: bigint;
  actor: string;
  action: string;
  target: string | null;
  body: JsonValue;
  prevHash: Buffer;
  hash: Buffer;
}

/** JSON round trip: what jsonb gives back is what gets hashed (no undefined, no -0, no class instances). */
export function normalizeBody(body: unknown): JsonValue {
  return JSON.parse(JSON.stringify(body ?? {})) as JsonValue;
}

/** DAG-CBOR sorts map keys canonically, so the bytes do not depend on jsonb's key order. */
export function entryBytes(e: Omit<AuditEntry, 'prevHash' | 'hash'>): Uint8Array {
  return dagCbor.encode([e.seq, e.atMicros, e.actor, e.action, e.target, e.body]);
}

export function chainHash(prevHash: Uint8Array, e: Omit<AuditEntry, 'prevHash' | 'hash'>): Buffer {
  return createHash('sha256').update(prevHash).update(entryBytes(e)).digest();
}

export interface ChainProblem {
  seq: bigint;
  kind: 'missing' | 'out_of_order' | 'broken_link' | 'altered' | 'head_mismatch';
  message: string;
}

/** Feed entries in seq order; reports the first problem of each entry (an empty list means intact). */
export class ChainVerifier {
  private expectedSeq = 1n;
  private prevHash: Buffer = GENESIS_HASH;
  private readonly seen = new Map<bigint, Buffer>();
  readonly problems: ChainProblem[] = [];
  count = 0;

  push(e: AuditEntry): void {
    this.count += 1;
    if (e.seq < this.expectedSeq) {
      this.problems.push({
        seq: e.seq,
        kind: 'out_of_order',
        message: `entry ${e.seq} appears after entry ${this.expectedSeq - 1n}`,
      });
    } else if (e.seq > this.expectedSeq) {
      this.problems.push({
        seq: e.seq,
        kind: 'missing',
        message: `entries ${this.expectedSeq}..${e.seq - 1n} are missing before entry ${e.seq}`,
      });
    }
    if (!e.prevHash.equals(this.prevHash)) {
      this.problems.push({
        seq: e.seq,
        kind: 'broken_link',
        message: `entry ${e.seq} does not link to the entry before it (prev_hash differs)`,
      });
    }
    if (!chainHash(e.prevHash, e).equals(e.hash)) {
      this.problems.push({
        seq: e.seq,
        kind: 'altered',
        message: `entry ${e.seq} was altered (its hash does not match its content)`,
      });
    }
    this.seen.set(e.seq, e.hash);
    this.prevHash = e.hash;
    this.expectedSeq = e.seq + 1n;
  }

  /** An anchored head (from a snapshot) must still be in the chain: catches a truncated tail. */
  checkAnchor(anchor: { seq: bigint; hash: Buffer }): void {
    const h = this.seen.get(anchor.seq);
    if (!h || !h.equals(anchor.hash)) {
      this.problems.push({
        seq: anchor.seq,
        kind: 'head_mismatch',
        message: h
          ? `entry ${anchor.seq} differs from the head recorded by a snapshot`
          : `entry ${anchor.seq}, recorded as head by a snapshot, is missing`,
      });
    }
  }
}
