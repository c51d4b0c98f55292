// Model runtimes for the node agent: a deterministic built-in one (the simulator's; same request, same
// output) and one forwarding to an OpenAI-compatible server (vLLM, Ollama, …) over HTTP; both stream their
// output piece by piece to `onDelta` when given one.
import { createHash } from 'node:crypto';
import {
  choicesAsked,
  type FinishReason,
  type NodeChoice,
  type NodeResult,
  type TokenLogprob,
  type ToolCall,
} from '../modules/jobs/index.js';
import type { JobRequest } from '../modules/routing/index.js';
import { FINISH_REASONS, type StreamDelta } from '../modules/network/index.js';

export type RuntimeDelta = Omit<StreamDelta, 'seq'>;

export interface RunOptions {
  /**
   * Aborted when the job is cancelled: the runtime stops producing and resolves with what it produced so far
   * (output and tokensOut of the pieces already given to onDelta, and the prompt tokens when known).
   */
  signal?: AbortSignal;
  /** Called with each piece of output as it is produced (text or tool-call fragments), in order. */
  onDelta?: (d: RuntimeDelta) => void;
}

export interface NodeRuntime {
  readonly name: string;
  run(model: string, request: JobRequest, opts?: RunOptions): Promise<NodeResult>;
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
  /**
   * `tokenDelayMs`: time to produce each output word (0: all at once). `wrongShare`: a cheating node's knob, the
   * share of text answers it gets wrong (every letter shifted by one: same length and token count, so only a
   * comparison with another node's answer can tell); `random` draws in [0, 1) for it (default Math.random).
   */
  constructor(
    private readonly opts: {
      dimensions?: number;
      tokenDelayMs?: number;
      wrongShare?: number;
      random?: () => number;
    } = {},
  ) {}

  async run(model: string, request: JobRequest, run: RunOptions = {}): Promise<NodeResult> {
    const honest = runBuiltin(model, request, this.opts.dimensions ?? 16);
    const wrong =
      request.kind !== 'embedding' &&
      (this.opts.wrongShare ?? 0) > 0 &&
      (this.opts.random ?? Math.random)() < this.opts.wrongShare!;
    const result = wrong ? wrongAnswer(honest) : honest;
    const delay = this.opts.tokenDelayMs ?? 0;
    if (request.kind === 'embedding' || (!run.onDelta && delay <= 0)) return result;
    const pieces = result.output.split(' ');
    for (let i = 0; i < pieces.length; i += 1) {
      // One word is one token: a cancel stops after the words already sent.
      const stopped = () => ({
        tokensIn: result.tokensIn,
        tokensOut: i,
        output: pieces.slice(0, i).join(' '),
      });
      if (run.signal?.aborted) return stopped();
      if (delay > 0) {
        const ok = await abortableSleep(delay, run.signal).then(
          () => true,
          () => false,
        );
        if (!ok) return stopped();
      }
      run.onDelta?.({ text: i === 0 ? pieces[i] : ` ${pieces[i]}` });
    }
    return result;
  }
}

/** The cheat's answer: every lower-case letter a–y shifted by one (the similarity rule's measured wrong answer). */
export function wrongAnswer(r: NodeResult): NodeResult {
  const shift = (t: string) => t.replace(/[a-y]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 1));
  return {
    ...r,
    output: shift(r.output),
    ...(r.choices ? { choices: r.choices.map((c) => ({ ...c, output: shift(c.output) })) } : {}),
  };
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error('aborted'));
    const t = setTimeout(() => (signal?.removeEventListener('abort', onAbort), resolve()), ms);
    const onAbort = () => (clearTimeout(t), reject(new Error('aborted')));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
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
  const format = (request.body.response_format as { type?: unknown } | undefined)?.type;
  if (format !== undefined && format !== 'text' && format !== 'json_object')
    // Refused, not ignored: output that does not follow the asked schema must not be billed as if it did.
    throw new Error(
      `the builtin runtime cannot honour response_format ${String(format)}; only text and json_object`,
    );
  const prompt = words(promptOf(request));
  const base = prompt.length > 0 ? [...prompt].reverse() : ['ok'];
  const choices = Array.from({ length: choicesAsked(request) }, (_, i) =>
    builtinChoice(request, [...base.slice(i % base.length), ...base.slice(0, i % base.length)]),
  );
  const [first, ...more] = choices;
  return {
    tokensIn: Math.max(1, prompt.length),
    tokensOut: choices.reduce((n, c) => n + c.tokens, 0),
    output: first!.output,
    finishReason: first!.finishReason,
    ...(first!.logprobs ? { logprobs: first!.logprobs } : {}),
    ...(more.length ? { choices: more.map(({ tokens: _tokens, ...c }) => c) } : {}),
  };
}

/**
 * One choice of the builtin answer: cut at the first `stop` sequence, at `maxTokens` words, wrapped in a JSON
 * object for `response_format: json_object`, with made-up but well-formed logprobs when asked.
 */
function builtinChoice(request: JobRequest, produced: string[]): NodeChoice & { tokens: number } {
  const stops = [request.body.stop].flat().filter((x): x is string => typeof x === 'string' && x !== '');
  let kept = produced.slice(0, request.maxTokens);
  let finishReason: FinishReason = kept.length < produced.length ? 'length' : 'stop';
  const joined = kept.join(' ');
  const cut = Math.min(...stops.map((x) => joined.indexOf(x)).filter((i) => i >= 0));
  if (Number.isFinite(cut)) {
    kept = words(joined.slice(0, cut));
    finishReason = 'stop';
  }
  const text = kept.join(' ');
  const json = (request.body.response_format as { type?: unknown } | undefined)?.type === 'json_object';
  const output = json ? JSON.stringify({ answer: text }) : text;
  // Completions ask alternatives with the number `logprobs`; chat with `top_logprobs` beside `logprobs: true`.
  const top = Number(
    (request.kind === 'completion' ? request.body.logprobs : request.body.top_logprobs) ?? 0,
  );
  const wantLogprobs = request.body.logprobs === true || typeof request.body.logprobs === 'number';
  const logprobs = wantLogprobs
    ? output.split(' ').map((w, i) => {
        const logprob = -((i % 5) + 1) / 10;
        return {
          token: i === 0 ? w : ` ${w}`,
          logprob,
          ...(top > 0
            ? {
                top: Array.from({ length: Math.min(20, top) }, (_, k) => ({
                  token: k === 0 ? w : `${w}~${k}`,
                  logprob: logprob - k,
                })),
              }
            : {}),
        };
      })
    : undefined;
  return { output, finishReason, tokens: kept.length, ...(logprobs ? { logprobs } : {}) };
}

const upstreamPath = {
  chat: '/v1/chat/completions',
  completion: '/v1/completions',
  embedding: '/v1/embeddings',
};

const finishOf = (r: unknown): FinishReason =>
  (FINISH_REASONS as readonly unknown[]).includes(r) ? (r as FinishReason) : 'stop';

interface UpstreamToolCall {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
}

/** Reads a `text/event-stream` body and yields each `data:` payload (up to `[DONE]`). */
async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    for (let at = buf.search(/\r?\n\r?\n/); at >= 0; at = buf.search(/\r?\n\r?\n/)) {
      const event = buf.slice(0, at);
      buf = buf.slice(at).replace(/^\r?\n\r?\n/, '');
      const data = event
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
      if (data === '[DONE]') return;
      if (data) yield data;
    }
  }
}

/** Forwards the job to an OpenAI-compatible server and maps its answer and usage back. */
export class UpstreamRuntime implements NodeRuntime {
  readonly name = 'upstream';
  constructor(private readonly baseUrl: string) {}

  async run(model: string, request: JobRequest, opts: RunOptions = {}): Promise<NodeResult> {
    const streamed = request.kind !== 'embedding' && opts.onDelta !== undefined;
    const body: Record<string, unknown> = { ...request.body, model, stream: streamed };
    if (streamed) body.stream_options = { include_usage: true };
    else delete body.stream_options;
    if (request.kind !== 'embedding') body.max_tokens = request.maxTokens;
    const res = await fetch(new URL(upstreamPath[request.kind], this.baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (!res.ok) throw new Error(`upstream answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    if (streamed && res.body) return this.readStream(res.body, opts.onDelta!, opts.signal, promptOf(request));
    const json = (await res.json()) as {
      choices?: UpstreamChoice[];
      data?: Array<{ embedding?: number[] }>;
      usage?: { prompt_tokens?: number; completion_tokens?: number };
    };
    const usage = { tokensIn: json.usage?.prompt_tokens ?? 0, tokensOut: json.usage?.completion_tokens ?? 0 };
    if (request.kind === 'embedding')
      return { ...usage, output: '', embeddings: (json.data ?? []).map((d) => d.embedding ?? []) };
    const [first, ...more] = [...(json.choices ?? [])]
      .sort((x, y) => (x.index ?? 0) - (y.index ?? 0))
      .map(choiceOf);
    const { output, ...rest } = first ?? { output: '' };
    return {
      ...usage,
      output,
      finishReason: 'stop',
      ...rest,
      ...(more.length ? { choices: more } : {}),
    };
  }

  /** An SSE answer: each content or tool-call fragment goes to onDelta as it arrives. */
  private async readStream(
    body: ReadableStream<Uint8Array>,
    onDelta: (d: RuntimeDelta) => void,
    signal: AbortSignal | undefined,
    promptText: string,
  ): Promise<NodeResult> {
    let output = '';
    let finish: FinishReason = 'stop';
    let usage = { tokensIn: 0, tokensOut: 0 };
    let pieces = 0;
    const calls = new Map<number, UpstreamToolCall>();
    // Choice 0 streams live; the other choices of `n > 1` and every choice's logprobs ride in the final result.
    type Other = UpstreamChoice & { text: string; calls: Map<number, UpstreamToolCall> };
    const others = new Map<number, Other>();
    const logprobs: NonNullable<NonNullable<UpstreamChoice['logprobs']>['content']> = [];
    try {
      await this.readChunks(body, (chunk) => {
        for (const c of chunk.choices ?? []) {
          if (c.logprobs?.content && (c.index ?? 0) === 0) logprobs.push(...c.logprobs.content);
          if ((c.index ?? 0) === 0) continue;
          const o: Other = others.get(c.index!) ?? {
            index: c.index!,
            text: '',
            calls: new Map(),
            logprobs: {},
          };
          o.text += c.delta?.content ?? c.text ?? '';
          if (c.finish_reason) o.finish_reason = c.finish_reason;
          if (c.logprobs?.content) (o.logprobs!.content ??= []).push(...c.logprobs.content);
          accumulateToolCalls(o.calls, c.delta?.tool_calls ?? []);
          others.set(c.index!, o);
        }
        const piece = this.onChunk(chunk, calls);
        if (piece.usage) usage = piece.usage;
        if (piece.finish) finish = piece.finish;
        if (piece.delta) {
          output += piece.delta.text ?? '';
          pieces += 1;
          onDelta(piece.delta);
        }
      });
    } catch (err) {
      if (!signal?.aborted) throw err;
      // Cancelled: servers stream one token per chunk (vLLM, Ollama, llama.cpp), so the pieces sent are the
      // tokens produced; the prompt count, unknown until the final usage chunk, is estimated (~4 bytes a token).
      return {
        tokensIn: usage.tokensIn || Math.ceil(Buffer.byteLength(promptText, 'utf8') / 4),
        tokensOut: pieces,
        output,
      };
    }
    const toolCalls = completeToolCalls([...calls.values()].sort((a, b) => (a.index ?? 0) - (b.index ?? 0)));
    const choices = [...others.values()]
      .sort((a, b) => a.index! - b.index!)
      .map((o) =>
        choiceOf({
          ...o,
          message: { content: o.text, tool_calls: [...o.calls.values()] },
          ...(o.logprobs?.content ? {} : { logprobs: null }),
        }),
      );
    const lp = logprobs.length ? logprobsOf({ content: logprobs }) : undefined;
    return {
      ...usage,
      output,
      finishReason: finish,
      ...(toolCalls.length ? { toolCalls } : {}),
      ...(lp ? { logprobs: lp } : {}),
      ...(choices.length ? { choices } : {}),
    };
  }

  private async readChunks(
    body: ReadableStream<Uint8Array>,
    each: (chunk: UpstreamChunk) => void,
  ): Promise<void> {
    for await (const data of sseData(body)) each(JSON.parse(data) as UpstreamChunk);
  }

  /** One SSE chunk of the upstream: its usage, finish reason, and the delta to forward (if any). */
  private onChunk(chunk: UpstreamChunk, calls: Map<number, UpstreamToolCall>): ChunkPiece {
    if (chunk.error) throw new Error(`upstream stream error: ${chunk.error.message ?? 'unknown'}`);
    const out: ChunkPiece = {};
    if (chunk.usage)
      out.usage = { tokensIn: chunk.usage.prompt_tokens ?? 0, tokensOut: chunk.usage.completion_tokens ?? 0 };
    const choice = chunk.choices?.find((c) => (c.index ?? 0) === 0);
    if (!choice) return out;
    const text = choice.delta?.content ?? choice.text ?? '';
    const tools = (choice.delta?.tool_calls ?? []).map((t, i) => ({
      index: t.index ?? i,
      ...(t.id ? { id: t.id } : {}),
      ...(t.type === 'function' ? { type: 'function' as const } : {}),
      ...(t.function
        ? {
            function: {
              ...(t.function.name !== undefined ? { name: t.function.name } : {}),
              ...(t.function.arguments !== undefined ? { arguments: t.function.arguments } : {}),
            },
          }
        : {}),
    }));
    accumulateToolCalls(calls, tools);
    if (text || tools.length)
      out.delta = { ...(text ? { text } : {}), ...(tools.length ? { toolCalls: tools } : {}) };
    if (choice.finish_reason) out.finish = finishOf(choice.finish_reason);
    return out;
  }
}

/** Adds streamed tool-call fragments to the calls being assembled (by their index). */
function accumulateToolCalls(calls: Map<number, UpstreamToolCall>, tools: UpstreamToolCall[]): void {
  tools.forEach((t, i) => {
    const index = t.index ?? i;
    const c = calls.get(index) ?? { index, function: { name: '', arguments: '' } };
    if (t.id) c.id = t.id;
    c.function!.name += t.function?.name ?? '';
    c.function!.arguments += t.function?.arguments ?? '';
    calls.set(index, c);
  });
}

interface UpstreamChunk {
  choices?: Array<{
    index?: number;
    delta?: { content?: string | null; tool_calls?: UpstreamToolCall[] };
    text?: string;
    finish_reason?: string | null;
    logprobs?: UpstreamChoice['logprobs'];
  }>;
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string };
}

interface ChunkPiece {
  usage?: { tokensIn: number; tokensOut: number };
  finish?: FinishReason;
  delta?: RuntimeDelta;
}

interface UpstreamChoice {
  index?: number;
  message?: { content?: string | null; tool_calls?: UpstreamToolCall[] };
  text?: string;
  finish_reason?: string;
  logprobs?: {
    /** Chat: one entry per token. */
    content?: Array<{
      token: string;
      logprob: number;
      top_logprobs?: Array<{ token: string; logprob: number }>;
    }>;
    /** Completions: parallel arrays, alternatives as `{ token: logprob }` maps. */
    tokens?: string[];
    token_logprobs?: Array<number | null>;
    top_logprobs?: Array<Record<string, number> | null>;
  } | null;
}

/** One upstream choice as a node reports it (text, finish reason, complete tool calls, logprobs). */
function choiceOf(c: UpstreamChoice): NodeChoice {
  const toolCalls = completeToolCalls(c.message?.tool_calls ?? []);
  const logprobs = logprobsOf(c.logprobs);
  return {
    output: c.message?.content ?? c.text ?? '',
    finishReason: finishOf(c.finish_reason),
    ...(toolCalls.length ? { toolCalls } : {}),
    ...(logprobs ? { logprobs } : {}),
  };
}

function logprobsOf(l: UpstreamChoice['logprobs']): TokenLogprob[] | undefined {
  if (!l) return undefined;
  if (l.content)
    return l.content.map((t) => ({
      token: t.token,
      logprob: Math.min(0, t.logprob),
      ...(t.top_logprobs?.length
        ? { top: t.top_logprobs.map((x) => ({ token: x.token, logprob: Math.min(0, x.logprob) })) }
        : {}),
    }));
  if (!l.tokens) return undefined;
  return l.tokens.map((token, i) => {
    const top = Object.entries(l.top_logprobs?.[i] ?? {});
    return {
      token,
      logprob: Math.min(0, l.token_logprobs?.[i] ?? 0),
      ...(top.length ? { top: top.map(([t, lp]) => ({ token: t, logprob: Math.min(0, lp) })) } : {}),
    };
  });
}

function completeToolCalls(calls: UpstreamToolCall[]): ToolCall[] {
  return calls
    .filter((c) => c.function?.name)
    .map((c, i) => ({
      id: c.id ?? `call_${i}`,
      type: 'function' as const,
      function: { name: c.function!.name!, arguments: c.function!.arguments ?? '' },
    }));
}
