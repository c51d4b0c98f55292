// A streamed Responses API answer as OpenAI sends it (typed server-sent events, each with `sequence_number`):
// response.created, response.in_progress, then per output item output_item.added → (content_part.added,
// output_text.delta…, output_text.done, content_part.done | function_call_arguments.delta…, .done) →
// output_item.done, and response.completed (or response.incomplete) carrying the whole response; an error
// mid-stream is one `error` event that ends the stream. Deltas come from the job's stream as the node makes
// them; what a missed delta left out is completed from the final result (as cloud.stream.ts does for chat).
import type { FastifyReply } from 'fastify';
import type { JobResult, JobStreams } from '../../modules/jobs/index.js';
import type { AppError } from '../../platform/errors.js';
import type { ResultStream } from './cloud.answer.js';
import { DeltaStream, type Delta, type DeltaStreamOptions } from './delta-stream.js';
import {
  functionCallId,
  messageId,
  responseObject,
  type Echo,
  type FunctionCallItem,
  type MessageItem,
  type OutputItem,
  type OutputText,
} from './responses.render.js';

type CallFragment = NonNullable<Delta['toolCalls']>[number];

export interface ResponseStreamOptions extends DeltaStreamOptions {
  echo: Echo;
}

export class ResponseStream extends DeltaStream<ResponseStreamOptions> implements ResultStream {
  private createdAt = new Date();
  private sequence = 0;
  private readonly items: OutputItem[] = [];
  private message: { item: MessageItem; part: OutputText } | undefined;
  /** Function call items by the node's tool-call index, in the order they started. */
  private readonly calls = new Map<number, FunctionCallItem>();

  private constructor(o: ResponseStreamOptions) {
    super(o);
  }

  /** Listens to the job's deltas (before the job is submitted, so none is missed). */
  static open(streams: JobStreams, o: ResponseStreamOptions): Promise<ResponseStream> {
    return new ResponseStream(o).listen(streams);
  }

  /** The job is submitted: headers, response.created and response.in_progress go out now, then early deltas. */
  start(reply: FastifyReply, createdAt: Date): void {
    this.createdAt = createdAt;
    this.begin(reply);
  }

  protected opened(): void {
    const response = responseObject(this.o.jobId, this.createdAt, this.o.echo);
    this.event('response.created', { response });
    this.event('response.in_progress', { response });
  }

  /** Completes every item from the job's result (what was not streamed), closes them, then the response. */
  async finish(r: JobResult): Promise<void> {
    if (this.ended) return;
    const text = r.output?.text ?? '';
    const streamed = this.message?.part.text ?? '';
    if (text.length > streamed.length && text.startsWith(streamed))
      this.appendText(text.slice(streamed.length));
    const calls = r.output?.toolCalls ?? [];
    const started = [...this.calls.values()];
    calls.forEach((call, i) => {
      const item = started[i] ?? this.startCall(i + 1_000, { index: i + 1_000, id: call.id });
      const args = call.function.arguments;
      if (args.length > item.arguments.length && args.startsWith(item.arguments))
        this.argumentsDelta(item, args.slice(item.arguments.length));
      // The signed result is the truth for what the items hold.
      Object.assign(item, { call_id: call.id, name: call.function.name, arguments: args });
    });
    if (this.items.length === 0) this.openMessage();
    const final = responseObject(this.o.jobId, this.createdAt, this.o.echo, {
      result: r,
      output: this.items,
    });
    for (const item of this.items)
      this.closeItem(item, final.status === 'completed' ? 'completed' : 'incomplete');
    this.event(final.status === 'completed' ? 'response.completed' : 'response.incomplete', {
      response: final,
    });
    await this.close();
  }

  /** Ends the stream with an error event, as OpenAI does mid-stream. */
  async fail(err: AppError): Promise<void> {
    if (this.ended) return;
    const { code, message } = err.toBody().error;
    this.event('error', { code, message, param: null });
    await this.close();
  }

  protected forward(e: Delta): void {
    if (e.text) this.appendText(e.text);
    for (const t of e.toolCalls ?? []) {
      const item = this.calls.get(t.index) ?? this.startCall(t.index, t);
      if (t.function?.name && !item.name) item.name = t.function.name;
      if (t.function?.arguments) this.argumentsDelta(item, t.function.arguments);
    }
  }

  private openMessage(): { item: MessageItem; part: OutputText } {
    const item: MessageItem = {
      type: 'message',
      id: messageId(this.o.jobId),
      status: 'in_progress',
      role: 'assistant',
      content: [],
    };
    this.items.push(item);
    const output_index = this.items.length - 1;
    this.event('response.output_item.added', { output_index, item });
    const part: OutputText = { type: 'output_text', text: '', annotations: [], logprobs: [] };
    item.content.push(part);
    this.event('response.content_part.added', { item_id: item.id, output_index, content_index: 0, part });
    this.message = { item, part };
    return this.message;
  }

  private appendText(delta: string): void {
    const { item, part } = this.message ?? this.openMessage();
    part.text += delta;
    this.event('response.output_text.delta', {
      item_id: item.id,
      output_index: this.items.indexOf(item),
      content_index: 0,
      delta,
      logprobs: [],
    });
  }

  private startCall(index: number, t: CallFragment): FunctionCallItem {
    const item: FunctionCallItem = {
      type: 'function_call',
      id: functionCallId(this.o.jobId, this.calls.size),
      call_id: t.id ?? `call_${index}`,
      name: t.function?.name ?? '',
      arguments: '',
      status: 'in_progress',
    };
    this.calls.set(index, item);
    this.items.push(item);
    this.event('response.output_item.added', { output_index: this.items.length - 1, item });
    return item;
  }

  private argumentsDelta(item: FunctionCallItem, delta: string): void {
    item.arguments += delta;
    this.event('response.function_call_arguments.delta', {
      item_id: item.id,
      output_index: this.items.indexOf(item),
      delta,
    });
  }

  private closeItem(item: OutputItem, status: 'completed' | 'incomplete'): void {
    const output_index = this.items.indexOf(item);
    item.status = item.type === 'function_call' ? 'completed' : status;
    if (item.type === 'message') {
      const part = item.content[0]!;
      const at = { item_id: item.id, output_index, content_index: 0 };
      this.event('response.output_text.done', { ...at, text: part.text, logprobs: [] });
      this.event('response.content_part.done', { ...at, part });
    } else
      this.event('response.function_call_arguments.done', {
        item_id: item.id,
        output_index,
        name: item.name,
        arguments: item.arguments,
      });
    this.event('response.output_item.done', { output_index, item });
  }

  private event(type: string, body: Record<string, unknown>): void {
    this.send(JSON.stringify({ type, sequence_number: this.sequence++, ...body }), type);
  }
}
