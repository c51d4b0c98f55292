// The built-in runtime is deterministic: the same request gives the same output, usage and vectors.
import { describe, expect, it } from 'vitest';
import { BuiltinRuntime, embeddingOf, runBuiltin } from './node-runtime.js';

describe('built-in runtime', () => {
  it('answers chat with the prompt words reversed; tokensIn = prompt words, tokensOut capped by maxTokens', () => {
    const chat = {
      kind: 'chat' as const,
      body: {
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: [{ type: 'text', text: 'hello  big world' }] },
        ],
      },
      maxTokens: 16,
    };
    const r = runBuiltin('llama3-8b', chat);
    expect(r).toEqual({
      tokensIn: 5,
      tokensOut: 5,
      output: 'world big hello brief be',
      finishReason: 'stop',
    });
    expect(runBuiltin('llama3-8b', chat)).toEqual(r);
    const capped = runBuiltin('llama3-8b', { ...chat, maxTokens: 2 });
    expect(capped).toEqual({ tokensIn: 5, tokensOut: 2, output: 'world big', finishReason: 'length' });
  });

  it('answers completions from the prompt (string or array) and an empty prompt with one word', () => {
    expect(runBuiltin('m', { kind: 'completion', body: { prompt: 'a b c' }, maxTokens: 10 }).output).toBe(
      'c b a',
    );
    expect(
      runBuiltin('m', { kind: 'completion', body: { prompt: ['a b', 'c'] }, maxTokens: 10 }).output,
    ).toBe('c b a');
    expect(runBuiltin('m', { kind: 'completion', body: {}, maxTokens: 10 })).toMatchObject({
      output: 'ok',
      tokensOut: 1,
    });
  });

  it('embeds each input as a deterministic unit vector that depends on model and text', () => {
    const req = { kind: 'embedding' as const, body: { input: ['alpha', 'beta', 'alpha'] }, maxTokens: 1 };
    const r = runBuiltin('embed-1', req, 12);
    expect(r.embeddings).toHaveLength(3);
    expect(r.embeddings![0]).toHaveLength(12);
    expect(r.embeddings![0]).toEqual(r.embeddings![2]);
    expect(r.embeddings![0]).not.toEqual(r.embeddings![1]);
    expect(runBuiltin('embed-1', req, 12)).toEqual(r);
    expect(embeddingOf('embed-2', 'alpha', 12)).not.toEqual(r.embeddings![0]);
    const norm = Math.sqrt(r.embeddings![1]!.reduce((s, x) => s + x * x, 0));
    expect(norm).toBeCloseTo(1, 4);
    expect(r.tokensIn).toBe(3);
    expect(
      runBuiltin('embed-1', { ...req, body: { input: 'x', dimensions: 40 } }).embeddings![0],
    ).toHaveLength(40);
  });

  it('stops at its signal and returns what it produced so far (one word, one token)', async () => {
    const ac = new AbortController();
    const pieces: string[] = [];
    const req = { kind: 'completion' as const, body: { prompt: 'a b c d e f g h' }, maxTokens: 10 };
    const r = await new BuiltinRuntime({ tokenDelayMs: 20 }).run('m', req, {
      signal: ac.signal,
      onDelta: (d) => {
        pieces.push(d.text ?? '');
        if (pieces.length === 3) ac.abort();
      },
    });
    expect(r).toEqual({ tokensIn: 8, tokensOut: 3, output: 'h g f' });
    expect(pieces.join('')).toBe(r.output);
  });
});
