// What every streamed answer of the Cloud API shares, whatever its event shapes (chat/completion chunks,
// Responses API events): it listens to the job's deltas before the job is submitted (none is missed), buffers
// those that come before the response starts, forwards each in order once the response is ours (hijacked),
// stops at the first missing one (pub/sub is at-most-once: the rest comes from the final result), counts the
// deltas that reached the client's socket (what a cancel at its disconnect bills), and reports a disconnect.
import type { FastifyReply } from 'fastify';
import type { JobStreams, StreamEvent } from '../../modules/jobs/index.js';

export type Delta = Extract<StreamEvent, { type: 'delta' }>;

export interface DeltaStreamOptions {
  jobId: string;
  /** The stream became void (the attempt that produced it failed): the caller stops waiting. */
  onReset: (reason: string) => void;
  /** The client went away before the end, after `delivered` deltas were written to it. */
  onDisconnect: (delivered: number) => void;
}

export abstract class DeltaStream<O extends DeltaStreamOptions = DeltaStreamOptions> {
  protected reply: FastifyReply | undefined;
  protected ended = false;
  private readonly early: StreamEvent[] = [];
  private next = 0;
  /** Deltas written to the client's socket while it was open. */
  private delivered = 0;
  /** A delta went missing on the way: the rest comes from the final result. */
  protected gap = false;
  private stopListening: (() => Promise<void>) | undefined;

  protected constructor(protected readonly o: O) {}

  /** Listens to the job's deltas (before the job is submitted, so none is missed). */
  protected async listen(streams: JobStreams): Promise<this> {
    this.stopListening = await streams.listen(this.o.jobId, (e) => this.onEvent(e));
    return this;
  }

  /** What goes out first, once the headers are sent (a role chunk, response.created …). */
  protected abstract opened(): void;
  /** Writes one delta in this stream's shapes. */
  protected abstract forward(d: Delta): void;

  /** The job is submitted: headers and the opening go out now, then whatever arrived meanwhile. */
  protected begin(reply: FastifyReply): void {
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
    this.opened();
    for (const e of this.early.splice(0)) this.onEvent(e);
  }

  /** The response is ours (hijacked): errors from here on are written as an SSE error event. */
  get started(): boolean {
    return this.reply !== undefined;
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

  /** Writes one SSE event (`data:` line, with an `event:` line when named) while the client is there. */
  protected send(data: string, event?: string): void {
    const raw = this.reply?.raw;
    if (raw && !raw.writableEnded && !raw.destroyed)
      raw.write(event ? `event: ${event}\ndata: ${data}\n\n` : `data: ${data}\n\n`);
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
}
