// Queue health and upkeep: our own counters (publish/deliver/ack/redelivery/retry/quarantine/expiry) with rates since
// the previous reading, queue depths and consumer counts from passive declares (no management plugin), and
// the if-idle deletion of lanes.
import type { AmqpConnection } from '../../stores/rabbitmq/connection.js';

export const COUNTER_NAMES = [
  'published',
  'confirmed',
  'republished',
  'delivered',
  'redelivered',
  'acked',
  'retried',
  'quarantined',
  'expired',
  'replayed',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];
export type Counters = Record<CounterName, number>;

export const zeroCounters = (): Counters => Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Counters;

/** Counters in total and per queue (lane, quarantine, ...), for rates per queue. */
export class QueueCounters {
  readonly total: Counters = zeroCounters();
  private readonly byQueue = new Map<string, Counters>();

  add(queue: string, name: CounterName, n = 1): void {
    this.total[name] += n;
    let c = this.byQueue.get(queue);
    if (!c) {
      c = zeroCounters();
      this.byQueue.set(queue, c);
    }
    c[name] += n;
  }

  of(queue: string): Counters {
    return this.byQueue.get(queue) ?? zeroCounters();
  }
}

export interface RateReading {
  counters: Counters;
  /** Per second over the interval since the previous reading. */
  ratesPerS: Counters;
  intervalMs: number;
}

/** Turns monotonically growing counters into per-second rates between two readings. */
export class RateMeter {
  private last: { at: number; counters: Counters } | undefined;

  read(counters: Counters, nowMs = Date.now()): RateReading {
    const prev = this.last;
    const intervalMs = prev ? Math.max(1, nowMs - prev.at) : 0;
    const ratesPerS = zeroCounters();
    if (prev)
      for (const n of COUNTER_NAMES) ratesPerS[n] = ((counters[n] - prev.counters[n]) * 1000) / intervalMs;
    this.last = { at: nowMs, counters: { ...counters } };
    return { counters: { ...counters }, ratesPerS, intervalMs };
  }
}

export interface QueueDepth {
  queue: string;
  /** Ready messages (not counting unacked deliveries); undefined if the queue does not exist. */
  messages: number | undefined;
  consumers: number | undefined;
}

/** Passive declare of each queue on a throwaway channel (a missing queue closes the channel with 404). */
export async function readQueueDepths(
  conn: AmqpConnection,
  queues: readonly string[],
): Promise<QueueDepth[]> {
  const out: QueueDepth[] = [];
  let ch = await conn.createChannel();
  ch.on('error', () => undefined);
  try {
    for (const queue of queues) {
      try {
        const q = await ch.checkQueue(queue);
        out.push({ queue, messages: q.messageCount, consumers: q.consumerCount });
      } catch {
        out.push({ queue, messages: undefined, consumers: undefined });
        ch = await conn.createChannel();
        ch.on('error', () => undefined);
      }
    }
  } finally {
    await ch.close().catch(() => undefined);
  }
  return out;
}

/**
 * Deletes a queue only if it is empty and has no consumer; true when it is gone (deleted now or before).
 * A refusal (406) or a missing queue (404) closes the channel, so each call uses its own.
 */
export async function deleteQueueIfIdle(conn: AmqpConnection, queue: string): Promise<boolean> {
  const ch = await conn.createChannel();
  let closedByServer: number | undefined;
  ch.on('error', (err: { code?: number }) => (closedByServer = err.code));
  try {
    await ch.deleteQueue(queue, { ifEmpty: true, ifUnused: true });
    await ch.close().catch(() => undefined);
    return true;
  } catch (err) {
    const code = closedByServer ?? (err as { code?: number }).code;
    return code === 404;
  }
}
