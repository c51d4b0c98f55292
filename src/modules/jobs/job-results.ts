// Finished jobs' results in Redis (for sync waiters and polling clients, JOB_RESULT_TTL_MS), and the
// process-wide waiter: a result put in this process answers its waiters here at once (no Redis round trip);
// one stored by another process wakes them through pub/sub, with a periodic re-read so a lost pub/sub message
// only delays a waiter, never strands it. PostgreSQL keeps the durable copy (job_results).
import { z } from 'zod';
import type { Logger } from '../../platform/logger.js';
import type { Redis } from '../../stores/redis/client.js';
import { RedisKeys } from '../../stores/redis/keys.js';
import { ATTEMPT_CAUSES, jobPriceSchema, REQUEST_KINDS } from '../routing/index.js';

export const JOB_ERROR_CODES = [
  'no_capacity',
  'job_failed',
  'expired',
  'cancelled',
  'not_enqueued',
  'submit_interrupted',
] as const;
export type JobErrorCode = (typeof JOB_ERROR_CODES)[number];

const finishReason = z.enum(['stop', 'length', 'tool_calls', 'content_filter']);
const toolCalls = z.array(
  z.object({
    id: z.string(),
    type: z.literal('function'),
    function: z.object({ name: z.string(), arguments: z.string() }),
  }),
);
const logprobs = z.array(
  z.object({
    token: z.string(),
    logprob: z.number(),
    top: z.array(z.object({ token: z.string(), logprob: z.number() })).optional(),
  }),
);

export const jobResultSchema = z.object({
  v: z.literal(1),
  jobId: z.string(),
  namespaceId: z.string(),
  model: z.string(),
  kind: z.enum(REQUEST_KINDS),
  status: z.enum(['succeeded', 'failed', 'expired', 'cancelled']),
  output: z
    .object({
      text: z.string().optional(),
      embeddings: z.array(z.array(z.number())).optional(),
      finishReason: finishReason.optional(),
      toolCalls: toolCalls.optional(),
      logprobs: logprobs.optional(),
      /** Choices 1..n-1 of an `n > 1` request. */
      choices: z
        .array(
          z.object({
            text: z.string(),
            finishReason: finishReason.optional(),
            toolCalls: toolCalls.optional(),
            logprobs: logprobs.optional(),
          }),
        )
        .optional(),
    })
    .optional(),
  usage: z.object({ promptTokens: z.number().int(), completionTokens: z.number().int() }).optional(),
  /** Micro-credits charged (decimal string). */
  costMicro: z.string(),
  /** The price the job was charged at (its config version and prices); absent before per-model prices. */
  price: jobPriceSchema.optional(),
  error: z.string().optional(),
  /** Why a job that did not succeed ended that way (what the API renders; `error` is the human text). */
  errorCode: z.enum(JOB_ERROR_CODES).optional(),
  /** The cause of the last failed attempt, when one failed. */
  cause: z.enum(ATTEMPT_CAUSES).optional(),
  attempts: z.number().int(),
  nodeAddress: z.string().nullable(),
  createdAt: z.string(),
  finishedAt: z.string(),
});
export type JobResult = z.infer<typeof jobResultSchema>;

/** A result row read back from PostgreSQL (undefined when absent or not matching the schema). */
export function parseStoredResult(raw: unknown): JobResult | undefined {
  if (raw === undefined || raw === null) return undefined;
  const parsed = jobResultSchema.safeParse(raw);
  return parsed.success ? parsed.data : undefined;
}

/** How often a waiter re-reads its key in case the pub/sub notice was lost. */
const RECHECK_MS = 1000;

export class JobResults {
  private readonly keys: RedisKeys;
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Results put in this process while someone here waits for them (handed over without a Redis read). */
  private readonly local = new Map<string, JobResult>();
  /**
   * Jobs a caller here is about to wait for (see expect): a result put before wait() is called is kept in
   * `local` for it. Without this, a job that a dispatcher of this process finishes while its submit still
   * awaits the broker's confirm lost its in-process hand-over, and the waiter sat until its 1 s re-read.
   */
  private readonly expected = new Map<string, number>();
  private readonly log: Logger;
  private started = false;
  private readonly onMessage = (channel: string, jobId: string) => {
    if (channel === this.keys.jobDoneChannel()) this.wake(jobId);
  };

  constructor(
    private readonly deps: {
      redis: Redis;
      /** A connection in subscriber mode (may be shared with other subscribers of this process). */
      subscriber: Redis;
      prefix: string;
      ttlMs: number;
      log: Logger;
    },
  ) {
    this.keys = new RedisKeys(deps.prefix);
    this.log = deps.log.child({ component: 'job-results' });
  }

  /** False once stop() began: waiters then return without a result because of shutdown, not a timeout. */
  get running(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.deps.subscriber.on('message', this.onMessage);
    await this.deps.subscriber.subscribe(this.keys.jobDoneChannel());
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.deps.subscriber.off('message', this.onMessage);
    await this.deps.subscriber.unsubscribe(this.keys.jobDoneChannel()).catch(() => undefined);
    for (const jobId of [...this.waiters.keys()]) this.wake(jobId);
  }

  /** Stores a result and wakes every waiter on every process. */
  async put(result: JobResult): Promise<void> {
    if (this.waiters.has(result.jobId) || this.expected.has(result.jobId)) {
      // A waiter in this process: answered now, before (and whatever happens to) the Redis writes.
      this.local.set(result.jobId, result);
      this.wake(result.jobId);
    }
    // One round trip: the copy for pollers and other processes, and the notice to waiters elsewhere.
    const replies = await this.deps.redis
      .pipeline()
      .set(this.keys.jobResult(result.jobId), JSON.stringify(result), 'PX', this.deps.ttlMs)
      .publish(this.keys.jobDoneChannel(), result.jobId)
      .exec();
    const failed = replies?.find(([err]) => err)?.[0];
    if (failed) throw failed;
  }

  /**
   * Announces a wait before the job is submitted, so that a result put in this process in between is handed
   * over in process; the returned function ends the announcement (call it once the wait is over or the
   * submit failed).
   */
  expect(jobId: string): () => void {
    this.expected.set(jobId, (this.expected.get(jobId) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.expected.get(jobId) ?? 1) - 1;
      if (n > 0) this.expected.set(jobId, n);
      else {
        this.expected.delete(jobId);
        if (!this.waiters.has(jobId)) this.local.delete(jobId);
      }
    };
  }

  async get(jobId: string): Promise<JobResult | undefined> {
    const raw = await this.deps.redis.get(this.keys.jobResult(jobId));
    if (raw === null) return undefined;
    const parsed = jobResultSchema.safeParse(JSON.parse(raw));
    if (!parsed.success) {
      this.log.warn({ jobId }, 'stored result does not match its schema; ignored');
      return undefined;
    }
    return parsed.data;
  }

  /** Resolves with the result once stored, or undefined after timeoutMs (or when the signal aborts). */
  async wait(
    jobId: string,
    timeoutMs: number,
    signal?: AbortSignal,
    opts: { readFirst?: boolean } = {},
  ): Promise<JobResult | undefined> {
    try {
      return await this.waitLoop(jobId, timeoutMs, signal, opts.readFirst ?? true);
    } finally {
      // The hand-over is for the waiters of this moment: the last one to leave drops it.
      if (!this.waiters.has(jobId) && !this.expected.has(jobId)) this.local.delete(jobId);
    }
  }

  private async waitLoop(
    jobId: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    readFirst: boolean,
  ): Promise<JobResult | undefined> {
    const deadline = Date.now() + timeoutMs;
    // A job submitted a moment ago has no result yet: its first Redis read is skipped (the re-reads remain).
    let read = readFirst;
    for (;;) {
      // Register before reading: a notice arriving between the read and the wait is not missed.
      let wake!: () => void;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      const set = this.waiters.get(jobId) ?? new Set();
      set.add(wake);
      this.waiters.set(jobId, set);
      try {
        const found = this.local.get(jobId) ?? (read ? await this.get(jobId) : undefined);
        read = true;
        if (found) return found;
        const left = deadline - Date.now();
        if (left <= 0 || signal?.aborted || !this.started) return undefined;
        let timer: NodeJS.Timeout | undefined;
        const onAbort = () => wake();
        signal?.addEventListener('abort', onAbort, { once: true });
        await Promise.race([
          woken,
          new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.min(left, RECHECK_MS)))),
        ]);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      } finally {
        set.delete(wake);
        if (set.size === 0) this.waiters.delete(jobId);
      }
    }
  }

  private wake(jobId: string): void {
    for (const w of this.waiters.get(jobId) ?? []) w();
  }
}
