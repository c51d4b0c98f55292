// Every exchange, queue and binding of the system, and their idempotent assertion. Nothing else declares any.
//
// Queue type (AMQP_QUEUE_TYPE), one for every queue of a deployment:
//  - classic (the default, for a single broker): lanes are many small queues (routing class x namespace)
//    created on demand and deleted when unused; a classic queue is one cheap process. Jobs carry their TTL as
//    per-message `expiration`, dead-lettered to the expiry path.
//  - quorum (for a cluster): every queue is a Raft group replicated over the cluster's nodes, so losing a node
//    (even the leader of a busy lane) loses no confirmed message. Dead-lettering is made at-least-once
//    (`x-dead-letter-strategy` needs `x-overflow: reject-publish`; no length limit is set, so nothing is ever
//    refused for that) — quorum queues otherwise dead-letter at-most-once — and lane leaders are spread over
//    the nodes (`x-queue-leader-locator: balanced`). Per-message TTL expires at the head only (as classic).
//    Our own attempt counter stays the retry limit (a quorum delivery-limit would drop a job silently).
// Neither uses x-max-priority (3.10 quorum queues reject it): priority classes are separate queues served by
// weights in the consumer, which also keeps bulk from starving. A queue keeps the type it was declared with:
// switching a deployment's type needs its queues drained and deleted, or a new DEPLOYMENT name.
import { createHash } from 'node:crypto';
import type { Channel } from 'amqplib';

export const QUEUE_TYPES = ['classic', 'quorum'] as const;
export type QueueType = (typeof QUEUE_TYPES)[number];

/** Arguments every queue of this type carries; `deadLetters`: the queue dead-letters to an exchange. */
function queueArgs(type: QueueType, deadLetterExchange?: string): Record<string, unknown> {
  const dlx = deadLetterExchange ? { 'x-dead-letter-exchange': deadLetterExchange } : {};
  if (type === 'classic') return { 'x-queue-type': 'classic', ...dlx };
  return {
    'x-queue-type': 'quorum',
    'x-queue-leader-locator': 'balanced',
    ...dlx,
    ...(deadLetterExchange
      ? { 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' }
      : {}),
  };
}

export const EXCHANGES = {
  /** Direct; every lane queue is bound with its own name as routing key. */
  jobs: 'rty.jobs',
  /** Fanout; job lanes dead-letter here (TTL expiry or reject) for the expiry consumer. */
  expired: 'rty.expired',
  /** Fanout; jobs past their attempt limit, published explicitly with the failure reasons. */
  quarantine: 'rty.quarantine',
  /** Topic; job lifecycle events (`job.<type>`) for recorders, webhooks and metrics. */
  events: 'rty.events',
  /** Fanout, transient messages; "a new lane exists" announcements so consumers attach quickly. */
  lanes: 'rty.lanes',
  /** Fanout; record batches (or single events) the recorder refused, with the reason in `x-rty-reason`. */
  recordsDead: 'rty.records.dead',
} as const;

export const QUEUES = {
  expired: 'rty.expired',
  quarantine: 'rty.quarantine',
  /** The recorder's durable copy of every job event (kept while MongoDB is down). */
  recorderEvents: 'rty.events.recorder',
  /** Record batches (records contract) for MongoDB, published on the events exchange as `records.*`. */
  records: 'rty.records',
  /** Quarantine of the records stream: refused events, kept for inspection, never retried by themselves. */
  recordsDead: 'rty.records.dead',
} as const;

/** Routing key of record batches on the events exchange (the `records.` prefix is what binds them). */
export const RECORDS_ROUTING_KEY = 'records.batch';

export const LANE_PREFIX = 'rty.lane.';

export interface TopologyOptions {
  retryDelaysMs: readonly number[];
  /** Queue-level TTL on lanes: a safety net above every per-message TTL. */
  jobTtlMaxMs: number;
  /** Unused lanes are deleted by the broker after this long (x-expires): a safety net only, since every
   * passive declare renews the lease; the routing layer prunes idle lanes explicitly. */
  laneExpiresMs: number;
  /** The deployment whose names these are (see topologyNames); '' or absent = the unprefixed default. */
  deployment?: string;
  /** Every queue's type (absent: classic). */
  queueType?: QueueType;
}

export interface ExchangeDecl {
  name: string;
  type: 'direct' | 'fanout' | 'topic';
}
export interface QueueDecl {
  name: string;
  arguments: Record<string, unknown>;
}
export interface BindingDecl {
  queue: string;
  exchange: string;
  pattern: string;
}
export interface Topology {
  exchanges: ExchangeDecl[];
  queues: QueueDecl[];
  bindings: BindingDecl[];
}

/** Exchange and queue of the retry tier with this delay; the queue dead-letters back to the job exchange. */
export function retryTierName(delayMs: number, deployment = ''): string {
  return `${deploymentPrefix(deployment)}rty.retry.${delayMs}ms`;
}

/** `<deployment>.` (or '' for the default deployment): what every name of a deployment starts with. */
export const deploymentPrefix = (deployment = ''): string => (deployment === '' ? '' : `${deployment}.`);

/**
 * Exchange and queue names of one deployment. A deployment name prefixes every name (`<deployment>.rty.…`),
 * so two backbones on one vhost never share a queue; the empty name is the unprefixed default (EXCHANGES,
 * QUEUES). A name is kept to [a-z0-9_-] (checked by the config).
 */
export interface TopologyNames {
  deployment: string;
  exchanges: { [K in keyof typeof EXCHANGES]: string };
  queues: { [K in keyof typeof QUEUES]: string };
  /** The deployment's marker exchange (see holdDeploymentMarker). */
  marker: string;
  /** What every lane queue of the deployment starts with. */
  lanePrefix: string;
  /** The type of the deployment's queues. */
  queueType: QueueType;
}

export function topologyNames(deployment = '', queueType: QueueType = 'classic'): TopologyNames {
  const p = deploymentPrefix(deployment);
  const prefix = <T extends Record<string, string>>(o: T) =>
    Object.fromEntries(Object.entries(o).map(([k, v]) => [k, `${p}${v}`])) as { [K in keyof T]: string };
  return {
    deployment,
    exchanges: prefix(EXCHANGES),
    queues: prefix(QUEUES),
    marker: `${p}rty.deployment`,
    lanePrefix: `${p}${LANE_PREFIX}`,
    queueType,
  };
}
export const DEFAULT_TOPOLOGY_NAMES = topologyNames('');

/**
 * Refuses to join another deployment's queues. Each process of a deployment holds the deployment's marker
 * exchange, declared with an `alternate-exchange` argument naming a hash of the stores its queues feed (the
 * MongoDB database, the PostgreSQL schema …): RabbitMQ compares that argument on every redeclare and refuses
 * another value (406 PRECONDITION_FAILED), so a backbone with the same names but other stores fails at start
 * instead of consuming the first one's events. The marker is auto-delete and bound to an exclusive queue per
 * holder, so it disappears with the last process holding it (a stopped deployment leaves nothing behind).
 * Runs on every (re)connection; throws an Error saying what to set.
 */
/** Header a records publisher stamps with its stores id; a consumer with other stores refuses the message. */
export const STORES_HEADER = 'x-rty-stores';

/** A short hash of the stores identity (no host or database name on the broker). */
export const storesId = (stores: string): string =>
  createHash('sha256').update(stores).digest('hex').slice(0, 16);

export async function holdDeploymentMarker(
  conn: { createChannel(): Promise<Channel> },
  names: TopologyNames,
  stores: string,
): Promise<void> {
  const ch = await conn.createChannel();
  ch.on('error', () => undefined); // the 406 closes the channel; the rejected promise carries it
  const id = storesId(stores);
  try {
    await ch.assertExchange(names.marker, 'fanout', {
      durable: false,
      autoDelete: true,
      arguments: { 'alternate-exchange': `rty.stores.${id}` },
    });
    // Exclusive: lives as long as this connection; its binding keeps the auto-delete marker alive.
    const q = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    await ch.bindQueue(q.queue, names.marker, '');
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (!/PRECONDITION_FAILED|406/.test(msg)) throw err;
    throw new Error(
      `the RabbitMQ queues of deployment "${names.deployment || '(default)'}" are in use by a backbone with ` +
        `other stores (this one: ${stores}): set DEPLOYMENT to a name of this deployment's own, or use another vhost`,
      { cause: err },
    );
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/**
 * What the recorder reads: record batches go to the events exchange as `records.batch` into a durable queue of
 * their own; the routing layer's `job.#` lifecycle events (another contract) into the recorderEvents queue;
 * refused ones of either to a dead-letter queue (records also dead-letters there on a reject without requeue).
 */
export function recordsTopology(names: TopologyNames = DEFAULT_TOPOLOGY_NAMES): Topology {
  const plain = queueArgs(names.queueType);
  const { exchanges: X, queues: Q } = names;
  return {
    exchanges: [
      { name: X.events, type: 'topic' },
      { name: X.recordsDead, type: 'fanout' },
    ],
    queues: [
      // No TTL, no length limit: a MongoDB outage only makes this queue longer; nothing is dropped.
      { name: Q.recorderEvents, arguments: plain },
      { name: Q.records, arguments: queueArgs(names.queueType, X.recordsDead) },
      { name: Q.recordsDead, arguments: plain },
    ],
    bindings: [
      { queue: Q.recorderEvents, exchange: X.events, pattern: 'job.#' },
      { queue: Q.records, exchange: X.events, pattern: 'records.#' },
      { queue: Q.recordsDead, exchange: X.recordsDead, pattern: '' },
    ],
  };
}

/** The fixed part of the topology (lanes are added on demand by laneTopology). */
export function staticTopology(o: TopologyOptions): Topology {
  const names = topologyNames(o.deployment, o.queueType);
  const plain = queueArgs(names.queueType);
  const { exchanges: X, queues: Q } = names;
  const retry = o.retryDelaysMs.map((d) => retryTierName(d, names.deployment));
  const records = recordsTopology(names);
  return {
    exchanges: [
      { name: X.jobs, type: 'direct' },
      { name: X.expired, type: 'fanout' },
      { name: X.quarantine, type: 'fanout' },
      { name: X.events, type: 'topic' },
      { name: X.lanes, type: 'fanout' },
      ...retry.map((name) => ({ name, type: 'fanout' as const })),
      ...records.exchanges.filter((e) => e.name !== X.events),
    ],
    queues: [
      // Neither drops messages (no TTL, no length limit), so neither needs a dead-letter exchange.
      { name: Q.expired, arguments: plain },
      { name: Q.quarantine, arguments: plain },
      // Every message in a tier has the same TTL, so expiry at the head is exact; the original routing key
      // (the lane) is kept by dead-lettering, which brings the job back to its own lane.
      ...o.retryDelaysMs.map((d) => ({
        name: retryTierName(d, names.deployment),
        arguments: { ...queueArgs(names.queueType, X.jobs), 'x-message-ttl': d },
      })),
      ...records.queues,
    ],
    bindings: [
      { queue: Q.expired, exchange: X.expired, pattern: '' },
      { queue: Q.quarantine, exchange: X.quarantine, pattern: '' },
      ...retry.map((name) => ({ queue: name, exchange: name, pattern: '' })),
      ...records.bindings,
    ],
  };
}

/** What identifies a lane: one queue per routing class and namespace (see the routing module). */
export interface LaneKey {
  environment: string;
  model: string;
  priority: string;
  /** '_' when the job is not restricted to a Subcloud. */
  subcloud: string;
  namespaceId: string;
}

// Model and Subcloud names are free text: keep [A-Za-z0-9_-] and escape everything else (incl. '.').
const escapePart = (s: string): string =>
  s.replace(/[^A-Za-z0-9_-]/g, (c) => `~${c.codePointAt(0)!.toString(16)}~`);

/** `[<deployment>.]rty.lane.<env>.<model>.<priority>.<subcloud>` : the routing class, shared by its
 * namespaces' lanes. */
export function routingClassName(k: Omit<LaneKey, 'namespaceId'>, deployment = ''): string {
  return `${deploymentPrefix(deployment)}${LANE_PREFIX}${escapePart(k.environment)}.${escapePart(k.model)}.${escapePart(k.priority)}.${escapePart(k.subcloud)}`;
}

/**
 * The public name of a queue: the deployment prefix is dropped (an operator setting, not part of the API); a
 * lane becomes `rty.lane.<env>.<model>.<priority>` (its Subcloud and namespace parts dropped, so depths can be
 * summed and shown without naming tenants); other queues keep their names.
 */
export function publicQueueName(queue: string, deployment = ''): string {
  const p = deploymentPrefix(deployment);
  const q = p !== '' && queue.startsWith(p) ? queue.slice(p.length) : queue;
  return q.startsWith(LANE_PREFIX) ? q.split('.').slice(0, 5).join('.') : q;
}

export function laneQueueName(k: LaneKey, deployment = ''): string {
  return `${routingClassName(k, deployment)}.${escapePart(k.namespaceId)}`;
}

/** The on-demand lane queue: TTL expiry dead-letters to the expiry path; x-expires as a removal safety net. */
export function laneTopology(k: LaneKey, o: TopologyOptions): Topology {
  const name = laneQueueName(k, o.deployment);
  const X = topologyNames(o.deployment).exchanges;
  return {
    exchanges: [],
    queues: [
      {
        name,
        arguments: {
          ...queueArgs(o.queueType ?? 'classic', X.expired),
          'x-message-ttl': o.jobTtlMaxMs,
          'x-expires': o.laneExpiresMs,
        },
      },
    ],
    bindings: [{ queue: name, exchange: X.jobs, pattern: name }],
  };
}

/** Declares everything; safe to repeat (same names, same arguments). */
export async function assertTopology(ch: Channel, t: Topology): Promise<void> {
  for (const e of t.exchanges) await ch.assertExchange(e.name, e.type, { durable: true });
  for (const q of t.queues) await ch.assertQueue(q.name, { durable: true, arguments: q.arguments });
  for (const b of t.bindings) await ch.bindQueue(b.queue, b.exchange, b.pattern);
}
