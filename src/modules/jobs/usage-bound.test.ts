// The usage bounds: byte counts as upper bounds on tokens, caps with the violation named, and the refusal of an
// output longer than max_tokens can produce.
import { describe, expect, it } from 'vitest';
import type { JobRequest } from '../routing/index.js';
import {
  boundUsage,
  deltaBytes,
  MAX_BYTES_PER_TOKEN,
  outputTokenBound,
  promptTokenBound,
} from './usage-bound.js';

const chat = (content: string, maxTokens = 10): JobRequest => ({
  kind: 'chat',
  body: { messages: [{ role: 'user', content }] },
  maxTokens,
});

describe('usage bounds', () => {
  it('the prompt bound covers every byte the model is shown, with the template allowances', () => {
    const base = promptTokenBound(chat(''));
    // One more byte of content (ASCII), or 4 bytes for one emoji: the bound grows by exactly that.
    expect(promptTokenBound(chat('a'))).toBe(base + 1);
    expect(promptTokenBound(chat('😀'))).toBe(base + 4);
    const withTools: JobRequest = {
      ...chat('a'),
      body: { ...chat('a').body, tools: [{ type: 'function' }] },
    };
    expect(promptTokenBound(withTools)).toBe(base + 1 + JSON.stringify([{ type: 'function' }]).length);
    expect(promptTokenBound({ kind: 'embedding', body: { input: ['ab', 'c'] }, maxTokens: 1 })).toBe(7);
    expect(promptTokenBound({ kind: 'completion', body: { prompt: 'abc' }, maxTokens: 1 })).toBe(128 + 5 + 8);
  });

  it('an honest claim passes unchanged and unflagged', () => {
    const r = { tokensIn: 3, tokensOut: 2, output: 'hello world' };
    expect(boundUsage(chat('say hello world'), r)).toEqual({ ok: true, result: r });
  });

  it('an inflated claim is cut to the bounds (prompt bound; min of max_tokens and output bytes) and named', () => {
    const req = chat('hi', 50);
    const out = boundUsage(req, { tokensIn: 2 ** 31 - 1, tokensOut: 2 ** 31 - 1, output: 'ok' });
    expect(out).toMatchObject({
      ok: true,
      result: { tokensIn: promptTokenBound(req), tokensOut: outputTokenBound({ output: 'ok' }) },
    });
    expect(outputTokenBound({ output: 'ok' })).toBe(4);
    expect(out.ok && out.violation).toMatch(
      /claimed 2147483647 prompt tokens .* and 2147483647 output tokens/,
    );
    const capped = boundUsage(chat('hi', 3), { tokensIn: 1, tokensOut: 9, output: 'a b c d e f g h i' });
    expect(capped).toMatchObject({ ok: true, result: { tokensOut: 3 } });
  });

  it('an output longer than max_tokens could be is refused; embeddings bill no output', () => {
    const out = boundUsage(chat('hi', 10), { tokensIn: 1, tokensOut: 10, output: 'x'.repeat(250_000) });
    expect(out).toEqual({
      ok: false,
      reason: `output of 250000 bytes is more than max_tokens 10 can produce (at most ${10 * MAX_BYTES_PER_TOKEN} bytes)`,
    });
    const emb = boundUsage(
      { kind: 'embedding', body: { input: 'abc' }, maxTokens: 1 },
      { tokensIn: 2, tokensOut: 5, output: '', embeddings: [[1]] },
    );
    expect(emb).toMatchObject({ ok: true, result: { tokensIn: 2, tokensOut: 0 } });
  });

  it('a delta counts the bytes of its text and tool-call fragments', () => {
    expect(deltaBytes({ text: 'é' })).toBe(2);
    expect(deltaBytes({ toolCalls: [{ id: 'c1', function: { name: 'f', arguments: '{}' } }] })).toBe(5);
    expect(deltaBytes({})).toBe(0);
  });

  it('n > 1: every choice is bounded like the first, choices beyond n are dropped, one over-long choice refuses all', () => {
    const req: JobRequest = { ...chat('hi', 20), body: { ...chat('hi', 20).body, n: 2 } };
    const extra = [1, 2, 3].map((i) => ({ output: `extra ${i}` }));
    const out = boundUsage(req, { tokensIn: 3, tokensOut: 1_000_000, output: 'a', choices: extra });
    expect(out).toMatchObject({ ok: true, result: { tokensOut: 3 + 9, choices: [{ output: 'extra 1' }] } });
    expect(out.ok && out.result.choices).toHaveLength(1);
    // An honest two-choice claim within both bounds passes as it is.
    const honest = { tokensIn: 3, tokensOut: 2, output: 'a', choices: [{ output: 'b' }] };
    expect(boundUsage(req, honest)).toEqual({ ok: true, result: honest });
    const long = boundUsage(req, {
      ...honest,
      choices: [{ output: 'x'.repeat(20 * MAX_BYTES_PER_TOKEN + 1) }],
    });
    expect(long.ok).toBe(false);
  });
});
