// Streamed jobs' deltas on their way from the node's socket to the waiting client: handed over in process when
// the client waits here, else published on the job's Redis pub/sub channel (keys.jobStreamChannel), which the
// client's process subscribed to before it submitted the job.
//
// Ordering: one process publishes a job's deltas (the one its node's socket is on), all on its one command
// connection, and Redis delivers the messages of a channel to a subscriber in the order it ran the PUBLISHes:
// a subscriber sees them in `seq` order. Pub/sub is at-most-once (a reconnect may drop some): the receiver
// checks `seq` and, on a gap, stops forwarding deltas and completes the text from the final result.
import { z } from 'zod';
import type { Logger } from '../../platform/logger.js';
import type { Redis } from '../../stores/redis/client.js';
import { RedisKeys } from '../../stores/redis/keys.js';

const toolCallDelta = z.object({
  index: z.number().int(),
  id: z.string().optional(),
  type: z.literal('function').optional(),
  function: z.object({ name: z.string().optional(), arguments: z.string().optional() }).optional(),
});

export const streamEventSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('delta'),
    seq: z.number().int(),
    text: z.string().optional(),
    toolCalls: z.array(toolCallDelta).optional(),
  }),
  /** The attempt that produced the deltas so far failed: what the client got is void. */
  z.object({ type: z.literal('reset'), reason: z.string() }),
]);
export type StreamEvent = z.infer<typeof streamEventSchema>;
type Listener = (e: StreamEvent) => void;

export class JobStreams {
  private readonly keys: RedisKeys;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly log: Logger;
  private readonly prefix: string;
  private readonly onMessage = (channel: string, text: string) => {
    if (!channel.startsWith(this.prefix)) return;
    const set = this.listeners.get(channel.slice(this.prefix.length));
    if (!set) return;
    let event: StreamEvent;
    try {
      event = streamEventSchema.parse(JSON.parse(text));
    } catch (err) {
      this.log.warn({ err, channel }, 'malformed stream message ignored');
      return;
    }
    for (const l of set) l(event);
  };

  constructor(private readonly deps: { redis: Redis; subscriber: Redis; prefix: string; log: Logger }) {
    this.keys = new RedisKeys(deps.prefix);
    this.prefix = this.keys.jobStreamChannel('');
    this.log = deps.log.child({ component: 'job-streams' });
    deps.subscriber.on('message', this.onMessage);
  }

  /**
   * Listens to a job's deltas (local and relayed). Resolves once the Redis subscription is in place, so
   * call it before the job is submitted. Returns the function that stops listening.
   */
  async listen(jobId: string, listener: Listener): Promise<() => Promise<void>> {
    const set = this.listeners.get(jobId) ?? new Set();
    set.add(listener);
    this.listeners.set(jobId, set);
    const channel = this.keys.jobStreamChannel(jobId);
    if (set.size === 1) await this.deps.subscriber.subscribe(channel);
    return async () => {
      set.delete(listener);
      if (set.size > 0 || this.listeners.get(jobId) !== set) return;
      this.listeners.delete(jobId);
      await this.deps.subscriber.unsubscribe(channel).catch(() => undefined);
    };
  }

  /** Sends a delta (or a reset) to the job's client: at once when it waits here, else over Redis. */
  emit(jobId: string, event: StreamEvent): void {
    const set = this.listeners.get(jobId);
    if (set) {
      for (const l of set) l(event);
      return;
    }
    this.deps.redis
      .publish(this.keys.jobStreamChannel(jobId), JSON.stringify(event))
      .catch((err: unknown) => this.log.warn({ err, jobId }, 'stream delta not published'));
  }

  stop(): void {
    this.deps.subscriber.off('message', this.onMessage);
  }
}
