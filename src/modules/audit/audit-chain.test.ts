// Unit tests of the audit hash chain: intact chains pass; removal, alteration and reordering are each named.
import { describe, expect, it } from 'vitest';
import { ChainVerifier, GENESIS_HASH, chainHash, type AuditEntry } from './audit-chain.js';

function chain(n: number): AuditEntry[] {
  const out: AuditEntry[] = [];
  let prev = GENESIS_HASH;
  for (let i = 1; i <= n; i += 1) {
    const base = {
      seq: BigInt(i),
      atMicros: 1_700_000_000_000_000n + BigInt(i),
      actor: 'admin',
      action: 'config.set',
      target: `k${i}`,
      body: { value: i, nested: { b: 1, a: [1, 'x'] } },
    };
    const e = { ...base, prevHash: prev, hash: chainHash(prev, base) };
    out.push(e);
    prev = e.hash;
  }
  return out;
}

function verify(entries: AuditEntry[]) {
  const v = new ChainVerifier();
  for (const e of entries) v.push(e);
  return v;
}

describe('audit chain', () => {
  it('an intact chain has no problems', () => {
    expect(verify(chain(10)).problems).toEqual([]);
  });

  it('a hash does not depend on key order in the body', () => {
    const base = { seq: 1n, atMicros: 1n, actor: 'a', action: 'b', target: null };
    expect(chainHash(GENESIS_HASH, { ...base, body: { x: 1, y: 2 } })).toEqual(
      chainHash(GENESIS_HASH, { ...base, body: { y: 2, x: 1 } }),
    );
  });

  it('detects a removed entry', () => {
    const c = chain(5);
    c.splice(2, 1);
    const p = verify(c).problems;
    expect(p.map((x) => [x.seq, x.kind])).toEqual([
      [4n, 'missing'],
      [4n, 'broken_link'],
    ]);
  });

  it('detects an altered entry', () => {
    const c = chain(5);
    c[1] = { ...c[1]!, body: { value: 999 } };
    expect(verify(c).problems).toEqual([expect.objectContaining({ seq: 2n, kind: 'altered' })]);
  });

  it('detects two entries that swapped places (renumbered to hide it)', () => {
    const c = chain(5);
    const a = c[1]!;
    const b = c[2]!;
    c[1] = { ...b, seq: 2n };
    c[2] = { ...a, seq: 3n };
    const kinds = verify(c).problems.map((x) => `${x.seq}:${x.kind}`);
    expect(kinds).toContain('2:broken_link');
    expect(kinds).toContain('3:broken_link');
  });

  it('detects a truncated tail against an anchored head', () => {
    const c = chain(5);
    const anchor = { seq: 5n, hash: c[4]!.hash };
    const v = verify(c.slice(0, 4));
    expect(v.problems).toEqual([]);
    v.checkAnchor(anchor);
    expect(v.problems).toEqual([expect.objectContaining({ seq: 5n, kind: 'head_mismatch' })]);
  });
});
