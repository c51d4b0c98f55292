// What a node may bill: the backbone's own upper bounds on a job's prompt and output tokens, so that a node
// cannot inflate its usage (a claim of 2^31−1 tokens) nor answer more than max_tokens allows.
//
// Why byte counts and not a tokenizer: every tokenizer the network's models use (byte-level BPE: GPT-2/tiktoken,
// Llama 3, Qwen, Mistral Tekken; SentencePiece with byte fallback: Llama 2, Mistral, Gemma) maps each token to at
// least one byte of the text, so a text of n UTF-8 bytes is at most n tokens, whatever the model. A tokenizer per
// model family would need each family's vocabulary (megabytes each) and the exact revision the node runs, and
// would cost the hot path milliseconds on long inputs; the bound costs one Buffer.byteLength. It is a cap, not a
// price: an honest node's own count (about a quarter of the bytes for English) is what is billed, and the bound
// only decides what is too much.
import type { JobRequest } from '../routing/index.js';
import { choicesAsked, type NodeResult } from './job.js';

/**
 * The most bytes one token can stand for. Vocabulary entries are short (the longest in common vocabularies are
 * runs of spaces or punctuation of a few dozen bytes); an output longer than max_tokens × this cannot have
 * come from max_tokens tokens.
 */
export const MAX_BYTES_PER_TOKEN = 256;
/** Tokens a chat template adds per message (role header, separators) beyond the message's own text. */
const TOKENS_PER_MESSAGE = 8;
/** Tokens a template adds once (begin-of-text, generation prompt, a default system line). */
const TOKENS_PER_PROMPT = 128;
/** Tokens a model spends per tool call beyond its name and arguments (call markers), and at the end (EOS). */
const TOKENS_PER_TOOL_CALL = 8;
const TOKENS_AT_END = 2;

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/**
 * An upper bound on the prompt tokens of a request: the UTF-8 bytes of everything the model is shown (the JSON
 * of the messages, which also covers roles and names; tools, functions and the response format), plus the
 * template's allowances.
 */
export function promptTokenBound(request: JobRequest): number {
  const b = request.body;
  if (request.kind === 'embedding') {
    const input = b.input;
    const inputs = Array.isArray(input) ? input : [input];
    return inputs.reduce<number>(
      (n, t) => n + bytes(typeof t === 'string' ? t : JSON.stringify(t ?? '')) + 2,
      0,
    );
  }
  const shown = (v: unknown) => (v === undefined || v === null ? 0 : bytes(JSON.stringify(v)));
  if (request.kind === 'chat') {
    const messages = Array.isArray(b.messages) ? b.messages.length : 0;
    return (
      shown(b.messages) +
      shown(b.tools) +
      shown(b.functions) +
      shown(b.response_format) +
      TOKENS_PER_MESSAGE * messages +
      TOKENS_PER_PROMPT
    );
  }
  const prompt = b.prompt;
  const prompts = Array.isArray(prompt) ? prompt : [prompt];
  return prompts.reduce<number>((n, p) => n + shown(p) + TOKENS_PER_MESSAGE, TOKENS_PER_PROMPT);
}

/** An upper bound on the tokens of an output: its text and tool calls in bytes, plus the end allowance. */
export function outputTokenBound(r: Pick<NodeResult, 'output' | 'toolCalls'>): number {
  const calls = (r.toolCalls ?? []).reduce(
    (n, c) => n + bytes(c.id) + bytes(c.function.name) + bytes(c.function.arguments) + TOKENS_PER_TOOL_CALL,
    0,
  );
  return bytes(r.output) + calls + TOKENS_AT_END;
}

/** The bytes a streamed piece adds (its text and tool-call fragments): a bound on its tokens. */
export function deltaBytes(d: {
  text?: string | undefined;
  toolCalls?: Array<{
    id?: string | undefined;
    function?: { name?: string; arguments?: string } | undefined;
  }>;
}): number {
  let n = d.text ? bytes(d.text) : 0;
  for (const t of d.toolCalls ?? [])
    n += (t.id ? bytes(t.id) : 0) + bytes(t.function?.name ?? '') + bytes(t.function?.arguments ?? '');
  return n;
}

/** The most output bytes a request allows (max_tokens × MAX_BYTES_PER_TOKEN); more is refused. */
export function outputByteLimit(request: Pick<JobRequest, 'maxTokens' | 'kind'>): number {
  return request.kind === 'embedding' ? Number.POSITIVE_INFINITY : request.maxTokens * MAX_BYTES_PER_TOKEN;
}

export type BoundedUsage =
  /** The result as billed: claims above a bound are cut to it, and `violation` says which (the node is penalized). */
  | { ok: true; result: NodeResult; violation?: string }
  /** The output itself is impossible for the request (longer than max_tokens allows): the result is refused. */
  | { ok: false; reason: string };

/**
 * Caps a node's claimed usage at the backbone's bounds: prompt tokens at promptTokenBound, output tokens at
 * max_tokens and at what the output (as delivered) can hold; embeddings produce no output tokens.
 */
export function boundUsage(request: JobRequest | undefined, r: NodeResult): BoundedUsage {
  if (!request) return { ok: true, result: r };
  // `n > 1`: every choice is bounded like the first, and choices beyond the `n` asked are dropped.
  const asked = choicesAsked(request);
  const extra = r.choices && r.choices.length > asked - 1 ? r.choices.slice(0, asked - 1) : r.choices;
  const all = [r, ...(extra ?? [])];
  const limit = outputByteLimit(request);
  for (const c of all) {
    const outBytes = bytes(c.output);
    if (outBytes > limit)
      return {
        ok: false,
        reason: `output of ${outBytes} bytes is more than max_tokens ${request.maxTokens} can produce (at most ${limit} bytes)`,
      };
  }
  const inBound = promptTokenBound(request);
  const outBound =
    request.kind === 'embedding'
      ? 0
      : Math.min(
          request.maxTokens * asked,
          all.reduce((n, c) => n + Math.min(request.maxTokens, outputTokenBound(c)), 0),
        );
  const trimmed = extra === r.choices ? r : { ...r, ...(extra ? { choices: extra } : {}) };
  const claims: string[] = [];
  if (r.tokensIn > inBound) claims.push(`${r.tokensIn} prompt tokens (bound ${inBound})`);
  if (r.tokensOut > outBound) claims.push(`${r.tokensOut} output tokens (bound ${outBound})`);
  if (claims.length === 0) return { ok: true, result: trimmed };
  return {
    ok: true,
    result: {
      ...trimmed,
      tokensIn: Math.min(r.tokensIn, inBound),
      tokensOut: Math.min(r.tokensOut, outBound),
    },
    violation: `claimed ${claims.join(' and ')}`,
  };
}
