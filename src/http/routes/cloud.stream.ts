// A streamed Cloud response as OpenAI sends it (server-sent events): the role chunk first, then each delta the
// node produces as it arrives (content, tool-call fragments), the finish reason, the usage chunk with
// `choices: []` when `stream_options.include_usage` is set, then `data: [DONE]`; an error mid-stream is one
// `data: {"error": …}` event that ends the stream.
import type { FastifyReply } from 'fastify';
import type { JobResult, JobStreams, StreamEvent } from '../../modules/jobs/index.js';
import type { AppError } from '../../platform/errors.js';

type Delta = Extract<StreamEvent, { type: 'delta' }>;

export interface ChunkStreamOptions {
  jobId: string;
  kind: 'chat' | 'completion';
  model: string;
  includeUsage: boolean;
  /** The stream became void (the attempt that produced it failed): the caller stops waiting. */
  onReset: (reason: string) => void;
  /** The client went away before the end, after `delivered` deltas were written to it. */
  onDisconnect: (delivered: number) => void;
}

export class ChunkStream {
  private reply: FastifyReply | undefined;
  private readonly early: StreamEvent[] = [];
  private created = 0;
  private next = 0;
  /** Deltas written to the client's socket while it was open (what a cancel at its disconnect bills). */
  private delivered = 0;
  /** A delta went missing on the way (pub/sub is at-most-once): the rest comes from the final result. */
  private gap = false;
  private text = '';
  private toolDeltas = 0;
  private ended = false;
  private stopListening: (() => Promise<void>) | undefined;

  private constructor(private readonly o: ChunkStreamOptions) {}

  /** Listens to the job's deltas (before the job is submitted, so none is missed). */
  static async open(streams: JobStreams, o: ChunkStreamOptions): Promise<ChunkStream> {
    const s = new ChunkStream(o);
    s.stopListening = await streams.listen(o.jobId, (e) => s.onEvent(e));
    return s;
  }

  /** The job is submitted: headers and the role chunk go out now, then whatever arrived meanwhile. */
  start(reply: FastifyReply, createdAt: Date): void {
    this.created = Math.floor(createdAt.getTime() / 1000);
    this.reply = reply;
    reply.hijack();
    const raw = reply.raw;
    const left = () => {
      // The client left: nothing more is written; the caller cancels the job or lets it run (its policy).
      if (this.ended) return;
      this.o.onDisconnect(this.delivered);
      void this.close();
    };
    if (raw.destroyed) {
      left();
      return;
    }
    raw.on('close', left);
    raw.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    this.chunk(this.o.kind === 'chat' ? { role: 'assistant', content: '', refusal: null } : { text: '' });
    for (const e of this.early.splice(0)) this.onEvent(e);
  }

  /** The response is ours (hijacked): errors from here on are written as an SSE error event. */
  get started(): boolean {
    return this.reply !== undefined;
  }

  /** Completes the stream from the job's result (the part not streamed, finish reason, usage, [DONE]). */
  async finish(r: JobResult): Promise<void> {
    if (this.ended) return;
    const text = r.output?.text ?? '';
    if (text.length > this.text.length && text.startsWith(this.text))
      this.chunk(
        this.o.kind === 'chat'
          ? { content: text.slice(this.text.length) }
          : { text: text.slice(this.text.length) },
      );
    const calls = r.output?.toolCalls ?? [];
    if (this.o.kind === 'chat' && calls.length > 0 && (this.toolDeltas === 0 || this.gap))
      this.chunk({ tool_calls: calls.map((c, index) => ({ index, ...c })) });
    this.chunk(this.o.kind === 'chat' ? {} : { text: '' }, r.output?.finishReason ?? 'stop');
    if (this.o.includeUsage) {
      const p = r.usage?.promptTokens ?? 0;
      const c = r.usage?.completionTokens ?? 0;
      this.write({
        ...this.base(),
        choices: [],
        usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c },
      });
    }
    this.reply?.raw.write('data: [DONE]\n\n');
    await this.close();
  }

  /** Ends the stream with an error event, as OpenAI does mid-stream. */
  async fail(err: AppError): Promise<void> {
    if (this.ended) return;
    this.write(err.toBody());
    await this.close();
  }

  /** Stops listening; ends the response if it was started. */
  async close(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      this.reply?.raw.end();
    }
    const stop = this.stopListening;
    this.stopListening = undefined;
    await stop?.();
  }

  private onEvent(e: StreamEvent): void {
    if (this.ended) return;
    if (!this.reply) {
      this.early.push(e);
      return;
    }
    if (e.type === 'reset') {
      this.o.onReset(e.reason);
      return;
    }
    if (this.gap || e.seq !== this.next) {
      this.gap = true;
      return;
    }
    const raw = this.reply.raw;
    if (raw.destroyed || raw.writableEnded) return; // the client is gone: this delta does not reach it
    this.next += 1;
    this.forward(e);
    this.delivered = this.next;
  }

  private forward(d: Delta): void {
    if (this.o.kind === 'completion') {
      if (d.text) this.chunk({ text: d.text });
      this.text += d.text ?? '';
      return;
    }
    const delta: Record<string, unknown> = {};
    if (d.text) delta.content = d.text;
    if (d.toolCalls?.length) {
      delta.tool_calls = d.toolCalls;
      this.toolDeltas += 1;
    }
    this.text += d.text ?? '';
    if (Object.keys(delta).length > 0) this.chunk(delta);
  }

  private base() {
    return this.o.kind === 'chat'
      ? {
          id: `chatcmpl-${this.o.jobId}`,
          object: 'chat.completion.chunk',
          created: this.created,
          model: this.o.model,
          system_fingerprint: null,
        }
      : { id: `cmpl-${this.o.jobId}`, object: 'text_completion', created: this.created, model: this.o.model };
  }

  private chunk(delta: Record<string, unknown>, finish: string | null = null): void {
    const choice =
      this.o.kind === 'chat'
        ? { index: 0, delta, logprobs: null, finish_reason: finish }
        : { index: 0, text: (delta.text as string | undefined) ?? '', logprobs: null, finish_reason: finish };
    this.write({
      ...this.base(),
      choices: [choice],
      ...(this.o.includeUsage ? { usage: null } : {}),
    });
  }

  private write(body: unknown): void {
    const raw = this.reply?.raw;
    if (raw && !raw.writableEnded && !raw.destroyed) raw.write(`data: ${JSON.stringify(body)}\n\n`);
  }
}
