// A streamed Cloud response as OpenAI sends it (server-sent events): the role chunk first, then each delta the
// node produces as it arrives (content, tool-call fragments), the finish reason, the usage chunk with
// `choices: []` when `stream_options.include_usage` is set, then `data: [DONE]`; an error mid-stream is one
// `data: {"error": …}` event that ends the stream.
import type { FastifyReply } from 'fastify';
import type { JobResult, JobStreams } from '../../modules/jobs/index.js';
import type { AppError } from '../../platform/errors.js';
import { chatLogprobs } from './cloud.render.js';
import { DeltaStream, type Delta, type DeltaStreamOptions } from './delta-stream.js';

export interface ChunkStreamOptions extends DeltaStreamOptions {
  kind: 'chat' | 'completion';
  model: string;
  includeUsage: boolean;
}

export class ChunkStream extends DeltaStream<ChunkStreamOptions> {
  private created = 0;
  private text = '';
  private toolDeltas = 0;

  private constructor(o: ChunkStreamOptions) {
    super(o);
  }

  /** Listens to the job's deltas (before the job is submitted, so none is missed). */
  static open(streams: JobStreams, o: ChunkStreamOptions): Promise<ChunkStream> {
    return new ChunkStream(o).listen(streams);
  }

  /** The job is submitted: headers and the role chunk go out now, then whatever arrived meanwhile. */
  start(reply: FastifyReply, createdAt: Date): void {
    this.created = Math.floor(createdAt.getTime() / 1000);
    this.begin(reply);
  }

  protected opened(): void {
    this.chunk(this.o.kind === 'chat' ? { role: 'assistant', content: '', refusal: null } : { text: '' });
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
    // Choice 0's logprobs and the other choices of `n > 1` arrive with the result (a node streams choice 0's
    // text only): each goes out as OpenAI's chunks for its `index` (clients append logprobs.content per choice).
    const extra = this.o.kind === 'chat' ? (r.output?.choices ?? []) : [];
    if (this.o.kind === 'chat' && r.output?.logprobs)
      this.chunk({}, null, 0, chatLogprobs(r.output.logprobs));
    extra.forEach((c, i) => {
      // Its role chunk first, as for choice 0 (and as OpenAI does: a choice's first chunk carries no logprobs).
      this.chunk({ role: 'assistant', content: '', refusal: null }, null, i + 1);
      const delta: Record<string, unknown> = { content: c.text };
      if (c.toolCalls?.length) delta.tool_calls = c.toolCalls.map((t, index) => ({ index, ...t }));
      this.chunk(delta, null, i + 1, chatLogprobs(c.logprobs));
    });
    this.chunk(this.o.kind === 'chat' ? {} : { text: '' }, r.output?.finishReason ?? 'stop');
    extra.forEach((c, i) => this.chunk({}, c.finishReason ?? 'stop', i + 1));
    if (this.o.includeUsage) {
      const p = r.usage?.promptTokens ?? 0;
      const c = r.usage?.completionTokens ?? 0;
      this.write({
        ...this.base(),
        choices: [],
        usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c },
      });
    }
    this.send('[DONE]');
    await this.close();
  }

  /** Ends the stream with an error event, as OpenAI does mid-stream. */
  async fail(err: AppError): Promise<void> {
    if (this.ended) return;
    this.write(err.toBody());
    await this.close();
  }

  protected forward(d: Delta): void {
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

  private chunk(
    delta: Record<string, unknown>,
    finish: string | null = null,
    index = 0,
    logprobs: unknown = null,
  ): void {
    const choice =
      this.o.kind === 'chat'
        ? { index, delta, logprobs, finish_reason: finish }
        : { index, text: (delta.text as string | undefined) ?? '', logprobs: null, finish_reason: finish };
    this.write({
      ...this.base(),
      choices: [choice],
      ...(this.o.includeUsage ? { usage: null } : {}),
    });
  }

  private write(body: unknown): void {
    this.send(JSON.stringify(body));
  }
}
