// Records lag and dead letters as figures: the consumer's own view (lag of what it holds) as Prometheus
// gauges, and the broker's view (messages still queued, dead-lettered) for a status page.
import { Gauge, type Registry } from 'prom-client';
import type { AmqpConnection } from '../../stores/rabbitmq/connection.js';
import { DEFAULT_TOPOLOGY_NAMES, type TopologyNames } from '../../stores/rabbitmq/topology.js';

/** Epoch ms of the oldest `at` among events (NaN when none has one). */
export function oldestAt(events: readonly unknown[]): number {
  let min = NaN;
  for (const e of events) {
    const at = (e as { at?: unknown } | null)?.at;
    if (typeof at !== 'string') continue;
    const t = Date.parse(at);
    if (!(t >= min)) min = Number.isNaN(min) || t < min ? t : min;
  }
  return min;
}

/** How far the records stream is behind, as this consumer sees it. */
export interface RecordsLag {
  /** Age of the oldest event held (buffered or being written) and not yet recorded; 0 when none is held. */
  lagSeconds: number;
  heldEvents: number;
  /** When a batch was last settled (epoch ms), null before the first. */
  lastRecordedAt: number | null;
}

/** What the gauges read from a consumer. */
export interface RecordsLagSource {
  lag(): RecordsLag;
  readonly stats: { deadLettered: number };
}

export function registerRecordStreamMetrics(registry: Registry, source: RecordsLagSource): void {
  new Gauge({
    name: 'rty_records_lag_seconds',
    help: 'Age of the oldest record event this process holds and has not written to MongoDB yet (0: none)',
    registers: [registry],
    collect() {
      this.set(source.lag().lagSeconds);
    },
  });
  new Gauge({
    name: 'rty_records_held_events',
    help: 'Record events taken from RabbitMQ and not yet written (buffered or being written)',
    registers: [registry],
    collect() {
      this.set(source.lag().heldEvents);
    },
  });
  new Gauge({
    name: 'rty_records_dead_lettered_events',
    help: 'Record events this process sent to the records dead-letter queue since start',
    registers: [registry],
    collect() {
      this.set(source.stats.deadLettered);
    },
  });
}

/** The records stream as the broker sees it (for a status field): messages waiting, and dead letters. */
export interface RecordsBacklog {
  /** Ready messages in the records and recorder-events queues (not yet taken by a recorder). */
  queuedMessages: number;
  deadLetteredMessages: number;
}

export async function readRecordsBacklog(
  conn: AmqpConnection,
  names: TopologyNames = DEFAULT_TOPOLOGY_NAMES,
): Promise<RecordsBacklog> {
  // A failed passive declare closes its channel, so each queue is checked on a channel of its own; a queue
  // not declared yet never held anything.
  const count = async (queue: string): Promise<number> => {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    try {
      return (await ch.checkQueue(queue)).messageCount;
    } catch {
      return 0;
    } finally {
      await ch.close().catch(() => undefined);
    }
  };
  const [records, events, dead] = await Promise.all(
    [names.queues.records, names.queues.recorderEvents, names.queues.recordsDead].map(count),
  );
  return { queuedMessages: records! + events!, deadLetteredMessages: dead! };
}
