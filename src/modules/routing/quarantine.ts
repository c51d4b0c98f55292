// Quarantine operations: list (peek without removing), replay into the job's lane, purge — all jobs or
// selected job ids. Each message is removed from quarantine only after its replay copy is confirmed.
import type { Channel, GetMessage } from 'amqplib';
import type { AmqpConnection } from '../../stores/rabbitmq/connection.js';
import { DEFAULT_TOPOLOGY_NAMES, type TopologyNames } from '../../stores/rabbitmq/topology.js';
import type { QueueCounters } from './health.js';
import { decodeJob, type JobMessage } from './routing.contracts.js';
import type { JobPublisher } from './routing.publisher.js';
import { replayedJob } from './routing.rules.js';

export interface QuarantinedJob {
  /** Undefined when the body breaks the contract (kept raw). */
  job: JobMessage | undefined;
  reason: string;
  /** The lane (or queue) it came from. */
  from: string;
  bytes: number;
}

export interface Selection {
  /** Only these job ids; all when omitted. */
  jobIds?: readonly string[];
  /** Upper bound on messages examined. */
  limit: number;
}

function describe(m: GetMessage): QuarantinedJob {
  return {
    job: decodeJob(m.content),
    reason: String(m.properties.headers?.['x-rty-reason'] ?? 'unknown'),
    from: m.fields.routingKey,
    bytes: m.content.length,
  };
}

/**
 * Walks up to `limit` quarantined messages with basic.get on a private channel; `visit` returns true to
 * remove one (ack), false to keep it. Kept ones are unacked until the channel closes, then requeued —
 * so a walk sees each message once.
 */
async function walk(
  conn: AmqpConnection,
  limit: number,
  visit: (m: GetMessage, q: QuarantinedJob) => Promise<boolean>,
  names: TopologyNames,
): Promise<number> {
  const ch: Channel = await conn.createChannel();
  ch.on('error', () => undefined);
  let removed = 0;
  try {
    const { messageCount } = await ch.checkQueue(names.queues.quarantine);
    for (let i = 0; i < Math.min(limit, messageCount); i += 1) {
      const m = await ch.get(names.queues.quarantine, { noAck: false });
      if (!m) break;
      if (await visit(m, describe(m))) {
        ch.ack(m);
        removed += 1;
      }
    }
  } finally {
    await ch.close().catch(() => undefined);
  }
  return removed;
}

const selected = (sel: Selection, q: QuarantinedJob): boolean =>
  !sel.jobIds || (q.job !== undefined && sel.jobIds.includes(q.job.jobId));

export async function listQuarantine(
  conn: AmqpConnection,
  limit: number,
  names: TopologyNames = DEFAULT_TOPOLOGY_NAMES,
): Promise<QuarantinedJob[]> {
  const out: QuarantinedJob[] = [];
  await walk(
    conn,
    limit,
    async (_m, q) => {
      out.push(q);
      return false;
    },
    names,
  );
  return out;
}

/** Puts selected jobs back into their lanes with a fresh attempt budget and TTL; returns how many. */
export async function replayQuarantine(
  conn: AmqpConnection,
  publisher: JobPublisher,
  counters: QueueCounters,
  sel: Selection,
  now = new Date(),
  names: TopologyNames = DEFAULT_TOPOLOGY_NAMES,
): Promise<number> {
  return walk(
    conn,
    sel.limit,
    async (_m, q) => {
      if (!q.job || !selected(sel, q)) return false;
      const job = replayedJob(q.job, now);
      await publisher.submit(job, now); // confirmed before the quarantine copy is acked
      await publisher.publishEvent('replayed', job, { reason: q.reason }, now);
      counters.add(names.queues.quarantine, 'replayed');
      return true;
    },
    names,
  );
}

/** Deletes selected jobs from quarantine (with a `purged` event each); returns how many. */
export async function purgeQuarantine(
  conn: AmqpConnection,
  publisher: JobPublisher,
  sel: Selection,
  now = new Date(),
  names: TopologyNames = DEFAULT_TOPOLOGY_NAMES,
): Promise<number> {
  return walk(
    conn,
    sel.limit,
    async (_m, q) => {
      if (!selected(sel, q)) return false;
      if (q.job) await publisher.publishEvent('purged', q.job, { reason: q.reason }, now);
      return true;
    },
    names,
  );
}
