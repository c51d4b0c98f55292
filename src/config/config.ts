// The one reader of process.env: parses every setting once into a frozen, typed Config.
import proxyAddr from '@fastify/proxy-addr';
import { z } from 'zod';
import { environmentSchema } from './vocabulary.js';

const DEV_PEPPER = 'dev-only-pepper-change-me';
const DEV_ADMIN_TOKEN = 'dev-only-admin-token';
/** A well-known development key (never holds value): production must set its own. */
const DEV_NETWORK_KEY = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d';

const intFrom = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);

export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  POSTGRES_URL: z.string().url().default('postgres://postgres@127.0.0.1:5432/rty'),
  POSTGRES_POOL_SIZE: intFrom(8, 1),
  POSTGRES_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]*$/, 'a lower-case SQL identifier')
    .default('public'),
  MONGO_URL: z
    .string()
    .regex(/^mongodb(\+srv)?:\/\//, 'a mongodb:// URL')
    .default('mongodb://127.0.0.1:27017/'),
  MONGO_DB: z.string().min(1).default('rty'),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'a redis:// URL')
    .default('redis://127.0.0.1:6379'),
  REDIS_KEY_PREFIX: z.string().default('rty:'),
  /**
   * The broker, or the nodes of a RabbitMQ cluster as a comma-separated list (same vhost and credentials):
   * a connection goes to the first that answers, and a lost one fails over to the next.
   */
  AMQP_URL: z
    .string()
    .refine(
      (s) => s.split(',').every((u) => /^amqps?:\/\/\S+$/.test(u.trim())),
      'an amqp:// URL, or several separated by commas',
    )
    .default('amqp://guest:guest@127.0.0.1:5672'),
  /**
   * The type of every queue: `classic` for a single broker, `quorum` for a cluster (replicated lanes and retry
   * tiers, at-least-once dead-lettering). A queue keeps the type it was created with: change it on a drained
   * deployment, or under a new DEPLOYMENT name.
   */
  AMQP_QUEUE_TYPE: z.enum(['classic', 'quorum']).default('classic'),
  /**
   * Deployment name: prefixes every exchange and queue (routing and records: `<name>.rty.lane.…`, `<name>.rty.records` …), so two
   * backbones on one vhost never share a queue. Empty: the unprefixed names.
   */
  DEPLOYMENT: z
    .string()
    .regex(/^([a-z0-9][a-z0-9_-]{0,39})?$/, 'empty or 1-40 of a-z 0-9 _ - (starting with a letter or digit)')
    .default(''),

  /** Group commit: how long a ledger operation may wait for others to share its transaction. */
  LEDGER_BATCH_MAX_WAIT_MS: intFrom(2),
  LEDGER_BATCH_MAX_SIZE: intFrom(500, 1),
  /** Concurrent group-commit transactions (each holds one pool connection). */
  LEDGER_BATCH_CONCURRENCY: intFrom(4, 1),
  /** A reservation not settled or voided within this time is released by the sweeper. */
  LEDGER_HOLD_TIMEOUT_MS: intFrom(15 * 60 * 1000, 1000),
  /** Server-side pepper mixed into API key hashes (a leaked database alone cannot check guesses). */
  API_KEY_PEPPER: z.string().min(16).default(DEV_PEPPER),

  // --- Live node state (Redis): presence, matchmaking, leases, flags, rate limits, caches ---
  /** How often nodes send a heartbeat (told to nodes; the TTL below must cover a few of them). */
  HEARTBEAT_INTERVAL_MS: intFrom(10_000, 100),
  /** A node not heard from for this long is offline (detected within this + 1 s). */
  HEARTBEAT_TTL_MS: intFrom(30_000, 500),
  /** Period of the live sweep (offline nodes, expired leases, ended cooldowns); keep it well under 1 s. */
  LIVE_SWEEP_INTERVAL_MS: intFrom(250, 20),
  /** Live-state cells per environment (the Redis Cluster shard unit); changing it re-shards on heartbeats. */
  LIVE_CELLS: intFrom(1, 1).pipe(z.number().max(1024)),
  /** Candidates a select-and-lease examines per pool before giving up on a cell. */
  LIVE_SELECT_SCAN_LIMIT: intFrom(256, 1),
  LEASE_TTL_MS: intFrom(120_000, 100),
  /**
   * A node is dispatchable only while its WebSocket session is open on some gateway process and that process
   * heard from it (a frame or a pong) within this bound; pings go out every third of it. A socket closed on a
   * running process leaves the pools at once; a silent socket or a crashed process's nodes within this bound.
   */
  NODE_SESSION_LIVENESS_MS: intFrom(15_000, 300),
  /** Measured reputation: observations are written and mirrored into the matchmaking score this often. */
  REPUTATION_FLUSH_INTERVAL_MS: intFrom(2_000, 50),
  /** Share of jobs (percent) that go to nodes on probation (their first 20 attempts) when established nodes could take them. */
  REPUTATION_PROBATION_SHARE_PERCENT: intFrom(10, 0).pipe(z.number().max(100)),
  /**
   * Spot checks (issue 16): the share of succeeded jobs, in basis points (100 = 1%), also run blind on a node of
   * another operator and compared; for a node still on probation, the second share. 0 turns checks off.
   */
  QC_SAMPLE_BASIS_POINTS: intFrom(100, 0).pipe(z.number().max(10_000)),
  QC_PROBATION_SAMPLE_BASIS_POINTS: intFrom(1_000, 0).pipe(z.number().max(10_000)),
  /** Checks a node must be found wrong on (by a tie-break) before it is shadow-banned and forfeits held-back earnings. */
  QC_SHADOW_BAN_FAILURES: intFrom(2, 1),
  /** Score points a failed job costs a node, and points a success gives back. */
  NODE_FAILURE_PENALTY: intFrom(500),
  NODE_SUCCESS_RECOVERY: intFrom(50),
  /** Penalty at which a node is paused for NODE_FAILURE_COOLDOWN_MS (a flag persisted in PostgreSQL). */
  NODE_COOLDOWN_PENALTY: intFrom(2_000, 1),
  NODE_FAILURE_COOLDOWN_MS: intFrom(5 * 60_000, 1_000),
  /** API key cache: shared Redis copy and each process's local copy (revocations invalidate both). */
  API_KEY_CACHE_TTL_MS: intFrom(60_000, 1_000),
  API_KEY_LOCAL_CACHE_TTL_MS: intFrom(1_000, 100),
  /** Token bucket defaults: per API key (when the key sets none) and per namespace. */
  RATE_LIMIT_KEY_PER_S: intFrom(20, 1),
  RATE_LIMIT_KEY_BURST: intFrom(40, 1),
  RATE_LIMIT_NAMESPACE_PER_S: intFrom(100, 1),
  RATE_LIMIT_NAMESPACE_BURST: intFrom(200, 1),
  /** Flags in force are re-mirrored from PostgreSQL this often (heals a mirror lost to a crash). */
  LIVE_FLAG_RECONCILE_INTERVAL_MS: intFrom(30_000, 1_000),
  /** Catalog, Subcloud list and status caches. */
  LIVE_CACHE_TTL_MS: intFrom(2_000, 100),

  // --- Archive: rollups, snapshots, audit (issue 7) ---
  /** Cold-storage directory for snapshot CAR files (the default archive target). */
  ARCHIVE_DIR: z.string().min(1).default('./var/archive'),
  /** Where snapshot CARs and record exports are kept: `dir` (ARCHIVE_DIR and RECORDS_EXPORT_DIR, the default) or
   * `ipfs` (a Kubo node at IPFS_API_URL, imported with the root pinned and read back by CID; the two directories then
   * hold only scratch files, fetched copies being read, export pointers and the checkpoint log). */
  COLD_STORAGE: z.enum(['dir', 'ipfs']).default('dir'),
  /** Kubo's RPC API (`npm run services -- --ipfs` starts a local node here). */
  IPFS_API_URL: z.string().url().default('http://127.0.0.1:5001'),
  /** Comma-separated witness directories that mirror the signed checkpoint log (besides ARCHIVE_DIR). */
  SNAPSHOT_WITNESS_DIRS: z.string().default(''),
  /** Finished jobs stay as detail rows this long before they are rolled up (and become prunable). */
  ROLLUP_DETAIL_WINDOW_DAYS: intFrom(7, 1),
  ROLLUP_INTERVAL_MS: intFrom(10 * 60 * 1000, 1000),
  /** Days aggregated per rollup transaction (chunks never cross a month: one partition scan each). */
  ROLLUP_MAX_DAYS_PER_TX: intFrom(31, 1),
  /** Rows and encoded bytes per snapshot data block. */
  SNAPSHOT_CHUNK_ROWS: intFrom(4096, 1),
  SNAPSHOT_CHUNK_MAX_BYTES: intFrom(512 * 1024, 1024),

  // ---- routing (RabbitMQ) -------------------------------------------------------------------------
  /** Unconfirmed publishes allowed in flight per publisher before publish() waits (backpressure). */
  ROUTING_PUBLISH_MAX_IN_FLIGHT: intFrom(2000, 1),
  /** Jobs a consumer runs at once; prefetch per lane is derived from it. */
  ROUTING_CONSUMER_CONCURRENCY: intFrom(32, 1),
  /** Unacked deliveries per lane (namespace sub-queue); bounds local buffering and what one lane can hold. */
  ROUTING_LANE_PREFETCH: intFrom(16, 1),
  /** Weighted round-robin shares of the priority classes (urgent is taken first, bulk keeps its share). */
  ROUTING_WEIGHT_URGENT: intFrom(8, 1),
  ROUTING_WEIGHT_BULK: intFrom(2, 1),
  ROUTING_WEIGHT_TEST: intFrom(1, 1),
  /** Our own attempt limit; past it a job goes to quarantine. */
  ROUTING_MAX_ATTEMPTS: intFrom(4, 1),
  /** Retry delays, comma-separated, increasing; one delay queue each. */
  ROUTING_RETRY_DELAYS_MS: z
    .string()
    .regex(/^\d+(,\d+)*$/, 'comma-separated milliseconds, e.g. 1000,5000,30000')
    .default('1000,5000,30000'),
  /** Longest job TTL accepted at submit (also the queue-level TTL safety net). */
  ROUTING_JOB_TTL_MAX_MS: intFrom(60 * 60 * 1000, 1000),
  /** Longest a job may run; must stay below the broker's consumer_timeout. */
  ROUTING_JOB_MAX_RUNTIME_MS: intFrom(10 * 60 * 1000, 1000),
  /** The broker's consumer_timeout (3.10 default 30 min; server-wide setting, not per queue before 3.12). */
  ROUTING_BROKER_CONSUMER_TIMEOUT_MS: intFrom(30 * 60 * 1000, 1000),
  /** A lane nobody published to for this long is released by consumers and deleted if empty (pruning). */
  ROUTING_LANE_IDLE_MS: intFrom(10 * 60 * 1000, 1000),
  /** Broker-side safety net (x-expires) for lanes left unused; above the longest TTL. Passive declares
   * (health reads) renew it, so pruning, not this, is what normally removes idle lanes. */
  ROUTING_LANE_EXPIRES_MS: intFrom(6 * 60 * 60 * 1000, 60_000),
  /** Consumers re-read the lane registry this often (announcements make new lanes visible sooner). */
  ROUTING_LANE_POLL_MS: intFrom(2000, 50),
  /** Delay before reconnecting after a lost AMQP connection (doubles up to 5 s). */
  ROUTING_RECONNECT_DELAY_MS: intFrom(200, 10),
  // --- records (MongoDB job documents and logs, retention, Space plan) ---
  /** Retention of a namespace without a paid plan, and the period it falls back to when a plan lapses. */
  RECORDS_DEFAULT_RETENTION_DAYS: intFrom(7, 1),
  /** String values larger than this leave the document for the blob store (GridFS), referenced by id + hash. */
  RECORDS_LARGE_PAYLOAD_BYTES: intFrom(1024 * 1024, 1024),
  /** An event document (after large payloads left it) above this size is refused; a job document holds two. */
  RECORDS_MAX_DOCUMENT_BYTES: intFrom(4 * 1024 * 1024, 4096),
  /** Cold storage directory for retention exports (gzip'd JSONL + manifest). */
  RECORDS_EXPORT_DIR: z.string().min(1).default('archive/records'),
  /** Documents per export file. */
  RECORDS_EXPORT_FILE_MAX_DOCS: intFrom(50_000, 1),
  /** Documents deleted per delete batch of a retention run. */
  RECORDS_DELETE_BATCH_SIZE: intFrom(1000, 1),
  /** TTL safety net (only where the server has TTL indexes): beyond the longest plan. */
  RECORDS_TTL_SAFETY_DAYS: intFrom(400, 1),
  /** How long a namespace keeps its paid retention after a storage charge fails. */
  RECORDS_PLAN_GRACE_MS: intFrom(3 * 24 * 3600 * 1000, 0),
  RECORDS_RETENTION_INTERVAL_MS: intFrom(15 * 60 * 1000, 1000),
  /**
   * The Space-plan catalogue, as JSON: `{"<plan>": {"retentionDays": n, "priceMicroPerGbDay": n, "minMicroPerDay": n}}`
   * (integer micro-credits). A day on a plan costs max(minMicroPerDay, stored GB × priceMicroPerGbDay); choosing
   * or changing to a plan pays its first day at once. Empty: the built-in space-30/90/365.
   */
  RECORDS_SPACE_PLANS: z
    .string()
    .default('')
    .transform((s, ctx) => {
      if (s.trim() === '') return undefined;
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'a JSON object of plans' });
        return z.NEVER;
      }
    })
    .pipe(
      z
        .record(
          z.string(),
          z
            .object({
              retentionDays: z.number().int().min(1).max(3650),
              priceMicroPerGbDay: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
              minMicroPerDay: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
            })
            .strict(),
        )
        // Keys checked here: zod reports a bad record key without its message.
        .superRefine((plans, ctx) => {
          for (const id of Object.keys(plans)) {
            if (id === 'default')
              ctx.addIssue({
                code: 'custom',
                path: [id],
                message: 'plan id "default" is reserved (no paid plan)',
              });
            else if (!/^[a-z0-9][a-z0-9-]{0,39}$/.test(id))
              ctx.addIssue({ code: 'custom', path: [id], message: 'a plan id is 1-40 of a-z 0-9 -' });
          }
        })
        .optional(),
    ),
  /** Records stream consumer (workers role): unacked messages held, events per recorder call, and the
   * longest a partial batch waits before it is written. */
  RECORDS_CONSUMER_PREFETCH: intFrom(64, 1),
  RECORDS_CONSUMER_BATCH_MAX_EVENTS: intFrom(500, 1),
  RECORDS_CONSUMER_BATCH_MAX_WAIT_MS: intFrom(50, 0),
  /** First retry delay of a batch while MongoDB is unreachable (doubles up to 30 s; the batch stays queued). */
  RECORDS_CONSUMER_RETRY_DELAY_MS: intFrom(500, 10),

  // --- background workers (workers role) ---
  /** How often expired credit holds are released (unused bonuses: every 10 periods). */
  LEDGER_SWEEP_INTERVAL_MS: intFrom(10_000, 100),
  /** How often job rows left open after their hold closed (voided/expired) are moved to 'expired'. */
  JOBS_STALE_RECONCILE_INTERVAL_MS: intFrom(60_000, 100),
  /** Only holds closed at least this long ago: the job flow's own terminal transition wins within it. */
  JOBS_STALE_GRACE_MS: intFrom(60_000, 0),
  /** How often jobs lost between their submit commit and enqueue are refunded and lost record events re-sent. */
  JOBS_RECOVER_INTERVAL_MS: intFrom(2_000, 100),
  /** A job younger than this may still be publishing (or confirming its records): the recovery leaves it. */
  JOBS_RECOVER_GRACE_MS: intFrom(10_000, 0),

  // --- serving: HTTP APIs, node gateway, job flow (issue 6) ---
  HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  HTTP_PORT: intFrom(8080, 0).pipe(z.number().max(65535)),
  /** Largest request body any HTTP API accepts (413 beyond). */
  HTTP_BODY_LIMIT_BYTES: intFrom(1024 * 1024, 1024),
  /** Deepest nesting of objects/arrays accepted in a JSON body or query (400 beyond, before any handler runs). */
  HTTP_JSON_MAX_DEPTH: intFrom(64, 2),
  /** Who may read /metrics and /openapi.json: `admin` (the admin token, default) or `public`. */
  HTTP_OPS_ENDPOINTS: z.enum(['admin', 'public']).default('admin'),
  /** Browser origins allowed to call the Cloud API (comma-separated, exact `scheme://host[:port]`); empty: no CORS. */
  CLOUD_CORS_ORIGINS: z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((o) => o.trim())
        .filter((o) => o.length > 0),
    )
    .pipe(z.array(z.url({ protocol: /^https?$/ }).regex(/^[^/]+\/\/[^/]+$/, 'an origin without a path'))),
  /** Admin API bearer token; only its SHA-256 is kept in memory after start. */
  ADMIN_TOKEN: z.string().min(16).default(DEV_ADMIN_TOKEN),
  /** Private key (0x + 64 hex) the network signs config versions with (EIP-191). */
  NETWORK_SIGNING_KEY: z
    .string()
    .regex(/^0x[0-9a-fA-F]{64}$/, 'a 0x-prefixed 32-byte hex private key')
    .default(DEV_NETWORK_KEY),
  /** Node messages whose timestamp is further than this from server time are refused (and nonces live 2×). */
  NODE_MESSAGE_MAX_SKEW_MS: intFrom(30_000, 1000),
  /**
   * Price per token (input and output) in micro-credits while the network config has no `prices` table (and for
   * jobs from before tables): a job then costs (prompt + output tokens) × this.
   */
  PRICE_PER_TOKEN_MICRO: intFrom(20, 0).pipe(z.number().max(1_000_000_000)),
  /** How often a process re-reads the latest network config version for its in-memory price table. */
  PRICE_TABLE_REFRESH_MS: intFrom(1_000, 50),
  /** Share of each settled charge credited to the node that ran the job, in percent. */
  NODE_SHARE_PERCENT: intFrom(80, 0).pipe(z.number().max(100)),
  /** A node's earnings younger than this are held back: no payout includes them (a proven cheat can forfeit them). */
  NODE_EARNINGS_HOLD_BACK_MS: intFrom(7 * 24 * 3_600_000, 0),
  /** Longest one attempt may run on a node before it counts as failed and the job is retried elsewhere. */
  JOB_ATTEMPT_TIMEOUT_MS: intFrom(60_000, 100),
  /** A streaming node silent this long between two deltas is timed out (node_timeout). */
  NODE_INTER_TOKEN_TIMEOUT_MS: intFrom(30_000, 50),
  /** Default job TTL (from submission; past it the job is expired and refunded without running). */
  JOB_DEFAULT_TTL_MS: intFrom(5 * 60_000, 1000),
  /** A sync request waits at most this long; then its job is cancelled and refunded (504). */
  JOB_SYNC_TIMEOUT_MS: intFrom(120_000, 100),
  /** Results stay in Redis this long for polling (after that, the job record in MongoDB has them). */
  JOB_RESULT_TTL_MS: intFrom(60 * 60_000, 1000),
  /** A dispatch waits this long for a free node (all busy) before the attempt fails and is retried later. */
  JOB_CAPACITY_WAIT_MS: intFrom(2_000, 0),
  /** max_tokens used to size the reservation when a request sets none. */
  JOB_DEFAULT_MAX_TOKENS: intFrom(512, 1),
  /** Environment of Cloud API requests that do not name one (header X-Rty-Environment). */
  CLOUD_DEFAULT_ENVIRONMENT: environmentSchema.default('testnet'),
  /** Deliveries a node holds unanswered before the gateway stops sending more (backpressure). */
  WS_MAX_IN_FLIGHT_PER_NODE: intFrom(64, 1),
  /**
   * Peers whose X-Forwarded-For is believed (comma-separated IPs or CIDRs, or loopback/linklocal/uniquelocal):
   * the TLS terminator or load balancer in front of the node gateway. Empty (default): the socket's address.
   */
  HTTP_TRUSTED_PROXIES: z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((a) => a.trim())
        .filter((a) => a.length > 0),
    )
    .pipe(
      z.array(
        z.string().refine(
          (a) => {
            try {
              proxyAddr.compile(a);
              return true;
            } catch {
              return false;
            }
          },
          { message: 'an IP address, a CIDR (10.0.0.0/8) or loopback/linklocal/uniquelocal' },
        ),
      ),
    ),
  /** WebSockets of one client address waiting for their node.hello at once, per gateway process (then 429). */
  WS_PENDING_HELLOS_PER_ADDRESS: intFrom(1_000, 1),
  /** WebSockets of one address that may end without a valid node.hello per minute, per process (then 429). */
  WS_FAILED_HELLOS_PER_ADDRESS_PER_MIN: intFrom(30, 1),
  /** How long shutdown waits for in-flight jobs before closing the stores. */
  SHUTDOWN_DRAIN_MS: intFrom(15_000, 0),
});

export type Config = Readonly<z.infer<typeof configSchema>>;

/** Parses the environment (or overrides) once; a bad value fails with the variable to set. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = configSchema
    .refine((c) => c.NODE_ENV !== 'production' || c.API_KEY_PEPPER !== DEV_PEPPER, {
      path: ['API_KEY_PEPPER'],
      message: 'must be set to a secret of at least 16 characters in production',
    })
    .refine((c) => c.NODE_ENV !== 'production' || c.ADMIN_TOKEN !== DEV_ADMIN_TOKEN, {
      path: ['ADMIN_TOKEN'],
      message: 'must be set to a secret of at least 16 characters in production',
    })
    .refine((c) => c.NODE_ENV !== 'production' || c.NETWORK_SIGNING_KEY !== DEV_NETWORK_KEY, {
      path: ['NETWORK_SIGNING_KEY'],
      message: 'must be set to the network private key in production',
    })
    .safeParse(env);
  if (!parsed.success) {
    // Secrets and URLs (which may carry passwords) are never echoed.
    const shown = (name: string) =>
      /TOKEN|KEY|PEPPER|PASSWORD|SECRET|URL/.test(name) && env[name] !== undefined
        ? '<redacted>'
        : JSON.stringify(env[name]);
    const lines = parsed.error.issues.map(
      (i) => `  ${i.path.join('.')}: ${i.message} (got ${shown(String(i.path[0]))})`,
    );
    throw new Error(`invalid configuration; set these environment variables:\n${lines.join('\n')}`);
  }
  return Object.freeze(parsed.data);
}
