// A spot-checked network on the real stores (PostgreSQL ledger and verdicts, Redis live state, RabbitMQ routing,
// MongoDB QC results) with simulated nodes in process: each node runs the simulator's built-in runtime, some with
// the cheat knob (`wrongShare`). Used by the spot-check integration tests and the trust benchmark.
import type { Pool } from 'pg';
import type { Redis } from 'ioredis';
import { AuditService } from '../src/modules/audit/index.js';
import { LedgerService } from '../src/modules/credits/index.js';
import {
  JobsService,
  QcSettler,
  SpotChecks,
  type NodeExecutor,
  type SubmitResult,
} from '../src/modules/jobs/index.js';
import type { NodesModule } from '../src/modules/nodes/index.js';
import {
  GridFsBlobStore,
  RecorderService,
  RecordsRepository,
  RetentionPolicies,
} from '../src/modules/records/index.js';
import { RoutingService, type JobMessage, type JobRequest } from '../src/modules/routing/index.js';
import { BuiltinRuntime } from '../src/agent/node-runtime.js';
import { systemClock } from '../src/platform/clock.js';
import type { MongoStore } from '../src/stores/mongo/client.js';
import { testLog } from './harness.js';
import { buildNodes, heartbeat, liveConfig, openSessions, registerNodes } from './live-harness.js';
import { routingOptionsFor } from './routing-fixtures.js';

/** A seeded uniform PRNG in [0, 1) (mulberry32): runs are reproducible. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SimNode {
  address: string;
  /** Share of text answers the node gets wrong (0: honest). */
  wrongShare?: number;
  /** Time the node takes per job (a slow node). */
  delayMs?: number;
  /** What its heartbeat claims (a liar claims quality 1, latency 0). */
  claims?: { quality: number; latencyMs: number };
}

export interface TrustNetwork {
  jobs: JobsService;
  spotChecks: SpotChecks;
  settler: QcSettler;
  ledger: LedgerService;
  nodes: NodesModule;
  recordsRepo: RecordsRepository;
  /** Every delivery: job id → node and the message it was given (blind copies included). */
  deliveries: Map<string, { node: string; message: JobMessage }>;
  /** Changes both sampling shares (basis points) for the jobs that follow. */
  setSampling(basisPoints: number): void;
  /** Holds blind copies (any job id not submitted by `submit`) until the returned release is called. */
  gateBlind(): () => void;
  submit(namespaceId: string, prompt: string): Promise<SubmitResult>;
  stop(): Promise<void>;
}

const MODEL = 'llama3-8b';

export async function startTrustNetwork(opts: {
  pool: Pool;
  redis: Redis;
  prefix: string;
  amqpUrl: string;
  mongo: MongoStore;
  nodes: SimNode[];
  sampleBasisPoints: number;
  /** For nodes on probation (default: sampleBasisPoints). */
  probationSampleBasisPoints?: number;
  shadowBanFailures: number;
  seed: number;
  capacity?: number;
}): Promise<TrustNetwork> {
  const { pool } = opts;
  const ledger = new LedgerService({
    pool,
    log: testLog,
    options: { batchMaxWaitMs: 2, batchMaxSize: 200, batchConcurrency: 4, holdTimeoutMs: 60_000 },
  });
  const config = liveConfig(opts.prefix, { HEARTBEAT_TTL_MS: 60_000, LEASE_TTL_MS: 30_000 });
  const nodes = buildNodes(pool, opts.redis, config);
  const list = opts.nodes.map((n) => ({ address: n.address, environment: 'testnet' as const }));
  await registerNodes(pool, list);
  await openSessions(nodes, list);
  for (const n of opts.nodes)
    await nodes.presence.ingest(
      heartbeat(n.address, {
        environment: 'testnet',
        models: [{ name: MODEL, version: 'v1', active: true }],
        capacity: opts.capacity ?? 8,
        ...(n.claims ?? {}),
      }),
    );
  const random = seeded(opts.seed);
  const runtimes = new Map(
    opts.nodes.map((n, i) => [
      n.address,
      new BuiltinRuntime({ wrongShare: n.wrongShare ?? 0, random: seeded(opts.seed * 31 + i) }),
    ]),
  );
  const delays = new Map(opts.nodes.map((n) => [n.address, n.delayMs ?? 0]));
  const deliveries = new Map<string, { node: string; message: JobMessage }>();
  const submitted = new Set<string>();
  let gate: Promise<void> | undefined;
  const executor: NodeExecutor = {
    async run(lease, job) {
      deliveries.set(job.jobId, { node: lease.nodeAddress, message: job });
      if (gate && !submitted.has(job.jobId)) await gate;
      const delay = delays.get(lease.nodeAddress) ?? 0;
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      return runtimes.get(lease.nodeAddress)!.run(job.model, job.request!);
    },
  };
  const routing = new RoutingService({
    pool,
    log: testLog,
    options: routingOptionsFor(opts.amqpUrl, { ROUTING_RETRY_DELAYS_MS: '50,100', ROUTING_MAX_ATTEMPTS: 3 }),
  });
  await routing.start();
  const recordsRepo = new RecordsRepository(opts.mongo.db);
  const recorder = new RecorderService({
    repo: recordsRepo,
    blobs: new GridFsBlobStore(opts.mongo.db),
    policies: new RetentionPolicies({ pool, clock: systemClock, cacheMs: 0 }),
    log: testLog,
    options: { largePayloadBytes: 1024 * 1024, maxDocumentBytes: 4 * 1024 * 1024 },
  });
  // The record stream's broker leg is covered by its own tests: here the events go straight to the recorder.
  const records = { publish: async (events: unknown[]) => void (await recorder.record(events)) };
  const settler = new QcSettler({
    pool,
    ledger,
    admin: nodes.admin,
    audit: new AuditService({ pool, log: testLog }),
    matchmaking: nodes.matchmaking,
    records,
    log: testLog,
    shadowBanFailures: opts.shadowBanFailures,
  });
  const sampling = {
    sampleBasisPoints: opts.sampleBasisPoints,
    probationSampleBasisPoints: opts.probationSampleBasisPoints ?? opts.sampleBasisPoints,
  };
  const spotChecks = new SpotChecks({
    matchmaking: nodes.matchmaking,
    admin: nodes.admin,
    executor,
    settler,
    log: testLog,
    random,
    options: {
      // Read per job: setSampling changes it for the jobs that follow.
      get sampleBasisPoints() {
        return sampling.sampleBasisPoints;
      },
      get probationSampleBasisPoints() {
        return sampling.probationSampleBasisPoints;
      },
      nodeSharePercent: 80n,
      jobTimeoutMs: 5_000,
    },
  });
  const jobs = new JobsService({
    pool,
    ledger,
    routing,
    matchmaking: nodes.matchmaking,
    executor,
    log: testLog,
    records,
    spotChecks,
    options: {
      pricePerTokenMicro: 100n,
      nodeSharePercent: 80n,
      maxAttempts: 3,
      jobTimeoutMs: 5_000,
      capacityWaitMs: 2_000,
    },
  });
  const consumer = await routing.startConsumer({
    serves: [{ environment: 'testnet', model: MODEL }],
    handler: jobs.handle,
    onExpired: jobs.onExpired,
  });
  let stopped = false;
  return {
    jobs,
    spotChecks,
    settler,
    ledger,
    nodes,
    recordsRepo,
    deliveries,
    setSampling(basisPoints) {
      sampling.sampleBasisPoints = basisPoints;
      sampling.probationSampleBasisPoints = basisPoints;
    },
    gateBlind() {
      let open!: () => void;
      gate = new Promise<void>((r) => (open = r));
      return () => {
        gate = undefined;
        open();
      };
    },
    async submit(namespaceId, prompt) {
      const request: JobRequest = {
        kind: 'chat',
        body: { messages: [{ role: 'user', content: prompt }], temperature: 0.7 },
        maxTokens: 32,
      };
      const jobId = crypto.randomUUID();
      submitted.add(jobId);
      return jobs.submit({
        namespaceId,
        jobId,
        model: MODEL,
        environment: 'testnet',
        priority: 'bulk',
        maxTokens: 32,
        ttlMs: 60_000,
        request,
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await consumer.stop();
      await jobs.drain(10_000);
      await jobs.stop();
      await routing.stop();
      await nodes.reputation.stop();
      await ledger.stop();
    },
  };
}

/** A prompt of a few words drawn from a fixed vocabulary (letters a–y, so a cheat's shift always shows). */
export function promptOf(i: number): string {
  const vocab = 'the quick brown fox jumps over lazy dog model node ledger credit job token seed'.split(' ');
  return Array.from({ length: 4 + (i % 9) }, (_, k) => vocab[(i * 7 + k * 13) % vocab.length]).join(' ');
}

/**
 * Consumer jobs a cheat serves until its k-th proven failure, as a bound: each job it serves is checked with
 * probability s and answered wrong with probability w, and a checked wrong answer is always proven (the blind
 * copy and the tie-break run on honest nodes; the rule's true-positive rate on the cheat's answers is 100%,
 * qc-compare.test.ts). The failures among N jobs are Binomial(N, s·w); the bound is the least N with
 * P(fewer than k) ≤ 1e-6.
 */
export function detectionBound(s: number, w: number, k: number, risk = 1e-6): number {
  const p = s * w;
  for (let n = k; ; n += 1) {
    let below = 0;
    let term = (1 - p) ** n; // P(X = 0)
    for (let x = 0; x < k; x += 1) {
      below += term;
      term = (term * (n - x) * p) / ((x + 1) * (1 - p));
    }
    if (below <= risk) return n;
  }
}
