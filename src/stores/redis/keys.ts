// Every Redis key and channel name of the system, with the Cluster shard unit of each group.
//
// Shard units (Redis Cluster): keys that one Lua script touches together share one {hash tag}.
// - Live node state: the shard unit is a *cell* = (environment, cell number), tag `{<env>.<cell>}`.
//   A node belongs to cell `cellOf(address, LIVE_CELLS)`; its record, its leases, the liveness set and
//   every ready pool of that cell live in the same slot, so heartbeat, select-and-lease, release and
//   sweep scripts are single-slot. Scripts receive the cell base (`liveCellBase`) as KEYS[1] and derive
//   the sub-keys below by appending a suffix (same slot, as BullMQ does with its queue prefix).
//   Select-and-lease walks cells until one has an eligible node; more cells spread load across shards.
// - Rate limits: the shard unit is a namespace, tag `{<namespaceId>}`: the per-key and per-namespace
//   buckets of one request are checked and taken in one script.
// - Caches (API keys, catalog, Subcloud lists, status): one key per value, no script spans them.

/** Suffixes appended to a live cell base (inside Lua and in TypeScript). */
export const liveSuffix = {
  /** HASH: one node's live record (status fields, capacity, lease count, flags `f:<flag>`, pools). */
  node: (address: string) => `node:${address}`,
  /** STRING: a node's static status JSON (versions, GPU, models, config), apart so the record stays small. */
  status: (address: string) => `status:${address}`,
  /** ZSET: address → last heartbeat received (Redis server time, ms). The liveness index. */
  seen: 'seen',
  /** ZSET: address → score; idle capacity serving `model` (public nodes, any region). */
  ready: (model: string) => `ready:${model}`,
  /** ZSET: the same restricted to one region. */
  readyInRegion: (model: string, region: string) => `ready:${model}|r:${region}`,
  /** ZSET: idle capacity of the members of one Subcloud (members serve only their Subcloud). */
  readyInSubcloud: (model: string, subcloudId: string) => `ready:${model}|s:${subcloudId}`,
  /** HASH: one lease (node, fencing token, expiry). */
  lease: (jobId: string) => `lease:${jobId}`,
  /** ZSET: jobId → lease expiry (ms). */
  leaseExpiry: 'leaseexp',
  /** SET: the job ids a node currently holds. */
  nodeLeases: (address: string) => `nodeleases:${address}`,
  /** STRING: the cell's fencing-token counter; (re)starts at server ms × 1000 so tokens never repeat after a flush. */
  fence: 'fence',
  /** ZSET: `<address>|<flag>` → flag expiry (ms), for cooldowns that lift themselves. */
  flagExpiry: 'flagexp',
  /** SET: `<address>|<flag>` mirrored into live records (so a reconcile can clear what PostgreSQL no longer has). */
  flagged: 'flagged',
  /**
   * ZSET: address → expiry (ms) of the liveness claim of the gateway process holding the node's open WebSocket
   * session. Only a node with a claim in force is dispatchable (heartbeats alone keep it online, not routable).
   */
  session: 'session',
  /** HASH: address → instance id of the gateway process whose claim is in `session`. */
  sessionOwner: 'sessionby',
  /** HASH: `<model>=<version>` → online nodes serving it. */
  catalog: 'catalog',
  /** HASH: counters (gpus). */
  stats: 'stats',
} as const;

export class RedisKeys {
  /** `prefix` is REDIS_KEY_PREFIX (tests add their own unique part). */
  constructor(readonly prefix: string) {}

  /** Base of one live cell; every key below it shares the tag `{env.cell}`. */
  liveCellBase(environment: string, cell: number): string {
    return `${this.prefix}live:{${environment}.${cell}}:`;
  }

  /** STRING: an epoch id that lives as long as the data; gone or changed = Redis lost its data (RedisLossWatcher). */
  liveEpoch(): string {
    return `${this.prefix}live:epoch`;
  }

  /** Pub/sub channel for node events (online, offline, lease expired) in JSON. */
  liveEventsChannel(): string {
    return `${this.prefix}live:events`;
  }

  /** Two buckets sharing the namespace tag: `<base>ns` and `<base>key:<keyId>`. */
  rateLimitBase(namespaceId: string): string {
    return `${this.prefix}rl:{${namespaceId}}:`;
  }

  /** STRING (JSON): cached API key record by its public prefix. */
  apiKeyCache(keyPrefix: string): string {
    return `${this.prefix}cache:apikey:${keyPrefix}`;
  }

  /** Pub/sub channel: a key prefix whose cached record every process must drop. */
  apiKeyInvalidationChannel(): string {
    return `${this.prefix}cache:apikey:invalidate`;
  }

  /** STRING (JSON): model catalog and availability of one environment. */
  catalogCache(environment: string): string {
    return `${this.prefix}cache:catalog:${environment}`;
  }

  /** STRING (JSON): the Subclouds of one environment. */
  subcloudListCache(environment: string): string {
    return `${this.prefix}cache:subclouds:${environment}`;
  }

  /** STRING (JSON): network status metrics. */
  statusCache(): string {
    return `${this.prefix}cache:status`;
  }

  /** STRING (JSON): the public Status API summary (nodes, queues, requests per second, latency). */
  statusSummaryCache(): string {
    return `${this.prefix}cache:status:summary`;
  }

  // --- Job flow (one key per value; no script spans them) ---

  /** STRING (JSON): a finished job's result for waiting and polling clients, kept JOB_RESULT_TTL_MS. */
  jobResult(jobId: string): string {
    return `${this.prefix}job:result:${jobId}`;
  }

  /** Pub/sub channel: the id of a job whose result was just stored (wakes sync waiters on any process). */
  jobDoneChannel(): string {
    return `${this.prefix}job:done`;
  }

  /** Pub/sub channel of one streamed job: its deltas, published by the process its node is connected to. */
  jobStreamChannel(jobId: string): string {
    return `${this.prefix}job:stream:${jobId}`;
  }

  // --- Node gateway ---

  /** STRING: a node message nonce, kept for twice the allowed clock skew (SET NX refuses a replay). */
  nodeNonce(node: string, nonce: string): string {
    return `${this.prefix}gw:nonce:${node}:${nonce}`;
  }

  /** STRING: the gateway process a node's WebSocket is connected to (expires unless refreshed). */
  nodeGateway(node: string): string {
    return `${this.prefix}gw:node:${node}`;
  }

  /** Pub/sub channel of one gateway process: deliveries relayed from other processes, and their results. */
  gatewayChannel(gatewayId: string): string {
    return `${this.prefix}gw:chan:${gatewayId}`;
  }

  /** Pub/sub channel every gateway listens to: job cancellations (the one holding the job acts on it). */
  gatewayCancelChannel(): string {
    return `${this.prefix}gw:cancel`;
  }
}
