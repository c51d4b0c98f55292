// The spot-check comparison rules, and the similarity rule's false-positive rate on the built-in runtime.
import { describe, expect, it } from 'vitest';
import { runBuiltin } from '../../agent/node-runtime.js';
import type { JobMessage, JobRequest } from '../routing/index.js';
import { blindJobId, compareResults, seedOf, similarity, withPinnedSeed } from './qc-compare.js';

const vocab = 'the a quick brown fox jumps over lazy dog model node ledger credit job token seed'.split(' ');
function prompt(i: number): string {
  let x = i * 2654435761;
  const n = 3 + (i % 17);
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) >>> 0;
    return vocab[x % vocab.length];
  }).join(' ');
}
const chat = (text: string, temperature: number): JobRequest => ({
  kind: 'chat',
  body: { messages: [{ role: 'user', content: text }], temperature },
  maxTokens: 64,
});
/** A wrong answer of the kind the simulator's cheat gives: every letter shifted by one. */
const shift = (s: string) => s.replace(/[a-y]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 1));

describe('spot-check comparison', () => {
  it('similarity rule: 0 false positives in 2,000 honest pairs on the built-in runtime, every wrong answer caught', () => {
    let falsePositives = 0;
    let caught = 0;
    const pairs = 2_000;
    for (let i = 0; i < pairs; i += 1) {
      const req = chat(prompt(i), 0.8);
      const a = runBuiltin('llama3-8b', req);
      const b = runBuiltin('llama3-8b', req);
      const c = compareResults(req, a, b);
      expect(c.rule).toBe('similarity');
      if (!c.agreed) falsePositives += 1;
      if (!compareResults(req, a, { ...b, output: shift(b.output) }).agreed) caught += 1;
    }
    expect(falsePositives / pairs).toBe(0);
    expect(caught).toBe(pairs);
  });

  it('temperature 0 compares exactly: one changed character disagrees', () => {
    const req = chat('one two three', 0);
    const a = runBuiltin('llama3-8b', req);
    expect(compareResults(req, a, { ...a }).agreed).toBe(true);
    const c = compareResults(req, a, { ...a, output: `${a.output}.` });
    expect(c).toEqual({ rule: 'exact', agreed: false, similarity: 0 });
  });

  it('similarity is the Dice coefficient of word bigrams', () => {
    expect(similarity('a b c', 'a b c')).toBe(1);
    expect(similarity('a b c', 'a b d')).toBe(0.5);
    expect(similarity('x y', 'p q')).toBe(0);
  });

  it('pins a stable seed on text jobs without one, keeps a consumer seed, and derives blind ids', () => {
    const m = { jobId: '00000000-0000-4000-8000-000000000001', request: chat('hi', 1) } as JobMessage;
    expect(withPinnedSeed(m).request!.body.seed).toBe(seedOf(m.jobId));
    expect(m.request!.body.seed).toBeUndefined();
    const own = { ...m, request: { ...m.request!, body: { ...m.request!.body, seed: 7 } } };
    expect(withPinnedSeed(own)).toBe(own);
    const b = blindJobId(m.jobId, 'b');
    expect(b).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(b).toBe(blindJobId(m.jobId, 'b'));
    expect(b).not.toBe(blindJobId(m.jobId, 'c'));
  });
});
