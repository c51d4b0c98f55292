// Model runtimes for the node agent: a deterministic built-in one (the simulator's; same request, same
// output) and one forwarding to an OpenAI-compatible server (vLLM, Ollama, …) over HTTP.
import { createHash } from 'node:crypto';
import type { NodeResult } from '../modules/jobs/index.js';
import type { JobRequest } from '../modules/routing/index.js';

export interface NodeRuntime {
  readonly name: string;
  run(model: string, request: JobRequest, signal?: AbortSignal): Promise<NodeResult>;
}

function words(text: string): string[] {
  return text.split(/\s+/).filter(Boolean);
}

/** The prompt text of a chat or completion body (string contents only; other parts are ignored). */
export function promptOf(request: JobRequest): string {
  const body = request.body;
  if (request.kind === 'chat') {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    return messages
      .map((m) => {
        const c = (m as { content?: unknown })?.content;
        if (typeof c === 'string') return c;
        if (Array.isArray(c))
          return c.map((p) => ((p as { text?: unknown })?.text as string | undefined) ?? '').join(' ');
        return '';
      })
      .join(' ');
  }
  const p = body.prompt;
  return typeof p === 'string' ? p : Array.isArray(p) ? p.filter((x) => typeof x === 'string').join(' ') : '';
}

/** Inputs of an embedding body (a string or an array of strings). */
export function embeddingInputs(request: JobRequest): string[] {
  const input = request.body.input;
  if (typeof input === 'string') return [input];
  return Array.isArray(input) ? input.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))) : [];
}

/** A unit-length vector derived from SHA-256 of (model, text): equal inputs give equal vectors. */
export function embeddingOf(model: string, text: string, dimensions: number): number[] {
  const out: number[] = [];
  for (let block = 0; out.length < dimensions; block += 1) {
    const h = createHash('sha256').update(`${model}\0${block}\0${text}`).digest();
    for (let i = 0; i + 1 < h.length && out.length < dimensions; i += 2)
      out.push(h.readUInt16BE(i) / 32767.5 - 1);
  }
  const norm = Math.sqrt(out.reduce((s, x) => s + x * x, 0)) || 1;
  return out.map((x) => Math.round((x / norm) * 1e6) / 1e6);
}

/**
 * Deterministic runtime: chat/completion answer the prompt's words in reverse order (tokensIn = prompt words,
 * tokensOut = min(maxTokens, words produced)); embeddings are hash-derived unit vectors.
 */
export class BuiltinRuntime implements NodeRuntime {
  readonly name = 'builtin';
  constructor(private readonly opts: { dimensions?: number } = {}) {}

  async run(model: string, request: JobRequest): Promise<NodeResult> {
    return runBuiltin(model, request, this.opts.dimensions ?? 16);
  }
}

export function runBuiltin(model: string, request: JobRequest, dimensions = 16): NodeResult {
  if (request.kind === 'embedding') {
    const inputs = embeddingInputs(request);
    const dims =
      typeof request.body.dimensions === 'number' && request.body.dimensions > 0
        ? Math.min(4096, Math.floor(request.body.dimensions))
        : dimensions;
    return {
      tokensIn: inputs.reduce((n, t) => n + Math.max(1, words(t).length), 0),
      tokensOut: 0,
      output: '',
      embeddings: inputs.map((t) => embeddingOf(model, t, dims)),
    };
  }
  const prompt = words(promptOf(request));
  const produced = prompt.length > 0 ? [...prompt].reverse() : ['ok'];
  const kept = produced.slice(0, request.maxTokens);
  return {
    tokensIn: Math.max(1, prompt.length),
    tokensOut: kept.length,
    output: kept.join(' '),
    finishReason: kept.length < produced.length ? 'length' : 'stop',
  };
}

const upstreamPath = {
  chat: '/v1/chat/completions',
  completion: '/v1/completions',
  embedding: '/v1/embeddings',
};

/** Forwards the job to an OpenAI-compatible server and maps its answer and usage back. */
export class UpstreamRuntime implements NodeRuntime {
  readonly name = 'upstream';
  constructor(private readonly baseUrl: string) {}

  async run(model: string, request: JobRequest, signal?: AbortSignal): Promise<NodeResult> {
    const body: Record<string, unknown> = { ...request.body, model, stream: false };
    if (request.kind !== 'embedding') body.max_tokens = request.maxTokens;
    const res = await fetch(new URL(upstreamPath[request.kind], this.baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
    if (!res.ok) throw new Error(`upstream answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    const json = (await res.json()) as {
      choices?: Array<{ message?: { content?: string }; text?: string; finish_reason?: string }>;
      data?: Array<{ embedding?: number[] }>;
      usage?: { prompt_tokens?: number; completion_tokens?: number };
    };
    const usage = { tokensIn: json.usage?.prompt_tokens ?? 0, tokensOut: json.usage?.completion_tokens ?? 0 };
    if (request.kind === 'embedding')
      return { ...usage, output: '', embeddings: (json.data ?? []).map((d) => d.embedding ?? []) };
    const choice = json.choices?.[0];
    return {
      ...usage,
      output: choice?.message?.content ?? choice?.text ?? '',
      finishReason: choice?.finish_reason === 'length' ? 'length' : 'stop',
    };
  }
}
