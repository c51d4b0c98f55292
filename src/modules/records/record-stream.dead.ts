// The records dead-letter queue: list (peek without removing), replay (back onto the events exchange with its
// routing key, so the recorder takes it again) and purge. A message leaves the queue only after its replay
// copy is confirmed by the broker.
import type { ConfirmChannel, GetMessage } from 'amqplib';
import type { AmqpConnection } from '../../stores/rabbitmq/connection.js';
import { DEFAULT_TOPOLOGY_NAMES, type TopologyNames } from '../../stores/rabbitmq/topology.js';
import { decodeRecordBatch } from './record-stream.contracts.js';

export interface DeadRecord {
  /** Why the recorder refused it (`x-rty-reason`). */
  reason: string;
  /** The queue it was consumed from. */
  from: string;
  /** The routing key a replay publishes it with. */
  routingKey: string;
  /** Events in it (1 for a message that is not a records envelope). */
  events: number;
  /** Namespace and job ids of its events, when it is a records envelope. */
  jobs: Array<{ namespaceId: string; jobId: string; type: string }>;
  deadAt: string | null;
  bytes: number;
}

function describe(m: GetMessage): DeadRecord {
  const h = m.properties.headers ?? {};
  const decoded = decodeRecordBatch(m.content);
  const events = 'batch' in decoded ? decoded.batch.events : [];
  return {
    reason: String(h['x-rty-reason'] ?? 'unknown'),
    from: String(h['x-rty-queue'] ?? 'unknown'),
    routingKey: m.fields.routingKey,
    events: 'batch' in decoded ? events.length : 1,
    jobs: events.map((e) => {
      const o = (e ?? {}) as Record<string, unknown>;
      return { namespaceId: String(o.namespaceId), jobId: String(o.jobId), type: String(o.type) };
    }),
    deadAt: typeof h['x-rty-dead-at'] === 'string' ? h['x-rty-dead-at'] : null,
    bytes: m.content.length,
  };
}

/**
 * Walks up to `limit` dead letters with basic.get on a private confirm channel; `visit` returns true to
 * remove one (ack), false to keep it. Kept ones stay unacked until the channel closes, then are requeued,
 * so a walk sees each message once.
 */
async function walk(
  conn: AmqpConnection,
  names: TopologyNames,
  limit: number,
  visit: (ch: ConfirmChannel, m: GetMessage, d: DeadRecord) => Promise<boolean>,
): Promise<number> {
  const ch = await conn.createConfirmChannel();
  ch.on('error', () => undefined);
  let visited = 0;
  try {
    let messageCount: number;
    try {
      ({ messageCount } = await ch.checkQueue(names.queues.recordsDead));
    } catch (err) {
      // No such queue: no recorder of this deployment ever ran here, so nothing was dead-lettered.
      if (/NOT_FOUND|404/.test(err instanceof Error ? err.message : String(err))) return 0;
      throw err;
    }
    for (let i = 0; i < Math.min(limit, messageCount); i += 1) {
      const m = await ch.get(names.queues.recordsDead, { noAck: false });
      if (!m) break;
      if (await visit(ch, m, describe(m))) {
        ch.ack(m);
        visited += 1;
      }
    }
  } finally {
    await ch.close().catch(() => undefined);
  }
  return visited;
}

export function listDeadRecords(
  conn: AmqpConnection,
  limit: number,
  names: TopologyNames = DEFAULT_TOPOLOGY_NAMES,
): Promise<DeadRecord[]> {
  const out: DeadRecord[] = [];
  return walk(conn, names, limit, async (_ch, _m, d) => {
    out.push(d);
    return false;
  }).then(() => out);
}

/** Publishes dead letters back to the events exchange (confirmed, then removed); returns how many. */
export function replayDeadRecords(
  conn: AmqpConnection,
  limit: number,
  names: TopologyNames = DEFAULT_TOPOLOGY_NAMES,
): Promise<number> {
  return walk(conn, names, limit, async (ch, m) => {
    const headers = { ...(m.properties.headers ?? {}), 'x-rty-replayed-at': new Date().toISOString() };
    await new Promise<void>((resolve, reject) =>
      ch.publish(
        names.exchanges.events,
        m.fields.routingKey,
        m.content,
        {
          persistent: true,
          contentType: m.properties.contentType ?? 'application/json',
          headers,
          ...(m.properties.messageId ? { messageId: String(m.properties.messageId) } : {}),
        },
        (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()),
      ),
    );
    return true;
  });
}

/** Deletes up to `limit` dead letters; returns how many. */
export function purgeDeadRecords(
  conn: AmqpConnection,
  limit: number,
  names: TopologyNames = DEFAULT_TOPOLOGY_NAMES,
): Promise<number> {
  return walk(conn, names, limit, async () => true);
}
