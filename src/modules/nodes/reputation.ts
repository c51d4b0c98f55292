// Measured reputation, the pure rules: what the network observes of a node's attempts, the validity checks
// it can make itself, decayed sums with stated half-lives, the prior of a new node, and the score (0..10,000)
// the matchmaker ranks by. Nothing here trusts what a node says about itself (its heartbeat's quality and
// latency are ignored).

/** Half-lives of the decayed sums (time-based, so that sums from several processes add up exactly). */
export const REPUTATION_HALF_LIFE_MS = {
  /** Successes and failures (errors, timeouts, disconnects). */
  outcomes: 6 * 3_600_000,
  /** Lease → result latency and tokens per second: a node's speed changes with its load, so it is recent. */
  speed: 3_600_000,
  /** Validity checks of results. */
  validity: 24 * 3_600_000,
} as const;

/**
 * The prior of a node with no observation, as pseudo-observations of weight PRIOR_WEIGHT (jobs): a 95% success
 * rate, 500 ms lease → result, 50 tokens/s, valid results; its score is PRIOR_SCORE (6,769). It is optimistic
 * on purpose: a new node must be tried to be measured (the greedy matchmaker would otherwise never pick it
 * over a measured, mediocre one), and a new key gains nothing from it beyond the probation share of traffic.
 */
export const PRIOR = { success: 0.95, latencyMs: 500, tokensPerS: 50, validity: 1 } as const;
export const PRIOR_WEIGHT = 4;
/** Attempts observed before a node leaves probation (until then it gets the probation share of traffic). */
export const PROBATION_JOBS = 20;
/** Scale of the speed factors: a node at these figures scores half of the speed part. */
const LATENCY_REF_MS = 1_000;
const TPS_REF = 50;

export type FailureKind = 'error' | 'timeout' | 'disconnect';

/** What the network saw of one attempt that reached a node (the network's own failures are never counted). */
export type Observation =
  | { kind: 'ok'; latencyMs: number; tokensOut: number; valid: boolean }
  | { kind: 'failed'; failure: FailureKind }
  /**
   * A spot check's comparison (a validity observation, not an attempt): `agreed: false` penalizes both nodes of
   * a disagreement at once; `restore` gives back the penalty of the node a tie-break found right.
   */
  | { kind: 'qc'; agreed: boolean; restore?: boolean };

/** Decayed sums of one node as of a time (all in "decayed attempts" or their weighted values). */
export interface ReputationSums {
  ok: number;
  failError: number;
  failTimeout: number;
  failDisconnect: number;
  /** Σ latency (ms) and the count it is over. */
  latencySumMs: number;
  latencyN: number;
  /** Σ output tokens and Σ seconds they took (tokens/s = ratio of sums). */
  tokens: number;
  tokenSeconds: number;
  validOk: number;
  validN: number;
}

export const emptySums = (): ReputationSums => ({
  ok: 0,
  failError: 0,
  failTimeout: 0,
  failDisconnect: 0,
  latencySumMs: 0,
  latencyN: 0,
  tokens: 0,
  tokenSeconds: 0,
  validOk: 0,
  validN: 0,
});

/** Adds one observation to a delta (observations of one flush are counted at the flush time). */
export function addObservation(d: ReputationSums, o: Observation): void {
  if (o.kind === 'qc') {
    d.validOk += o.agreed ? 1 : 0;
    d.validN += o.restore ? 0 : 1;
    return;
  }
  if (o.kind === 'failed') {
    if (o.failure === 'error') d.failError += 1;
    else if (o.failure === 'timeout') d.failTimeout += 1;
    else d.failDisconnect += 1;
    return;
  }
  d.ok += 1;
  d.latencySumMs += o.latencyMs;
  d.latencyN += 1;
  d.tokens += o.tokensOut;
  d.tokenSeconds += Math.max(o.latencyMs, 1) / 1000;
  d.validOk += o.valid ? 1 : 0;
  d.validN += 1;
}

export interface ReputationParts {
  successRate: number;
  errorRate: number;
  timeoutRate: number;
  disconnectRate: number;
  latencyMs: number;
  tokensPerS: number;
  validity: number;
}

/** The decayed averages, each shrunk towards the prior by PRIOR_WEIGHT pseudo-observations. */
export function partsOf(s: ReputationSums): ReputationParts {
  const k = PRIOR_WEIGHT;
  const attempts = s.ok + s.failError + s.failTimeout + s.failDisconnect;
  const rate = (x: number) => x / (attempts + k);
  return {
    successRate: (s.ok + PRIOR.success * k) / (attempts + k),
    errorRate: rate(s.failError),
    timeoutRate: rate(s.failTimeout),
    disconnectRate: rate(s.failDisconnect),
    latencyMs: (s.latencySumMs + PRIOR.latencyMs * k) / (s.latencyN + k),
    // The prior weighs k seconds at PRIOR.tokensPerS.
    tokensPerS: (s.tokens + PRIOR.tokensPerS * k) / (s.tokenSeconds + k),
    validity: (s.validOk + PRIOR.validity * k) / (s.validN + k),
  };
}

/**
 * Score in 0..10,000: success² × validity² × (0.4 + 0.3 × latency factor + 0.3 × throughput factor). Squares
 * make failures and invalid results cost more than slowness; each speed factor is x/(x + ref) in (0, 1).
 */
export function scoreOf(p: ReputationParts): number {
  const lat = LATENCY_REF_MS / (LATENCY_REF_MS + p.latencyMs);
  const tps = p.tokensPerS / (p.tokensPerS + TPS_REF);
  const s = p.successRate ** 2 * p.validity ** 2 * (0.4 + 0.3 * lat + 0.3 * tps);
  return Math.max(0, Math.min(10_000, Math.round(s * 10_000)));
}

export const PRIOR_SCORE = scoreOf(partsOf(emptySums()));

/** What a result must satisfy, from the request it answers (structural: the nodes module knows no job types). */
export interface ResultForCheck {
  tokensOut: number;
  output: string;
  finishReason?: string;
  toolCalls?: Array<{ function: { arguments: string } }>;
}

const parsesAsJson = (text: string): boolean => {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
};

/**
 * The checks the network can make of a result without running the model: tool-call arguments are JSON; a
 * `response_format` of json_object/json_schema gets JSON text; the output fits max_tokens, and the finish
 * reason agrees with it ('length' only at the budget, 'tool_calls' only with tool calls). Returns the name
 * of the first failed check, or undefined.
 */
export function failedCheckOf(
  request: { maxTokens: number; body: Record<string, unknown> } | undefined,
  r: ResultForCheck,
): string | undefined {
  if (r.toolCalls?.some((c) => !parsesAsJson(c.function.arguments))) return 'tool_call_arguments_json';
  if (r.finishReason === 'tool_calls' && !r.toolCalls?.length) return 'finish_reason_tool_calls';
  if (!request) return undefined;
  if (r.tokensOut > request.maxTokens) return 'tokens_over_max_tokens';
  if (r.finishReason === 'length' && r.tokensOut < request.maxTokens) return 'finish_reason_length';
  const format = (request.body.response_format as { type?: unknown } | undefined)?.type;
  if (
    (format === 'json_object' || format === 'json_schema') &&
    !r.toolCalls?.length &&
    !parsesAsJson(r.output)
  )
    return 'response_format_json';
  return undefined;
}

/** Multiplies decayed sums by 2^(−elapsed/half-life) per family (for reads between flushes). */
export function decaySums(s: ReputationSums, elapsedMs: number): ReputationSums {
  const f = (h: number) => Math.pow(0.5, Math.max(0, elapsedMs) / h);
  const o = f(REPUTATION_HALF_LIFE_MS.outcomes);
  const sp = f(REPUTATION_HALF_LIFE_MS.speed);
  const v = f(REPUTATION_HALF_LIFE_MS.validity);
  return {
    ok: s.ok * o,
    failError: s.failError * o,
    failTimeout: s.failTimeout * o,
    failDisconnect: s.failDisconnect * o,
    latencySumMs: s.latencySumMs * sp,
    latencyN: s.latencyN * sp,
    tokens: s.tokens * sp,
    tokenSeconds: s.tokenSeconds * sp,
    validOk: s.validOk * v,
    validN: s.validN * v,
  };
}

/** Whether a job id falls in the probation share (a stable hash: retries of a job decide alike). */
export function isProbationJob(jobId: string, sharePercent: number): boolean {
  let h = 2166136261;
  for (let i = 0; i < jobId.length; i += 1) h = Math.imul(h ^ jobId.charCodeAt(i), 16777619) >>> 0;
  // A different mix than cellOrder's, so that the share does not line up with the starting cell.
  return (Math.imul(h, 2654435761) >>> 0) % 10_000 < sharePercent * 100;
}

/**
 * The observation of one attempt for the job path: a result (with the lease → result time) is checked here;
 * a node-caused failure maps to its kind; anything else (our own failures) is not the node's and gives none.
 */
export function observationOf(
  attempt:
    | {
        result: ResultForCheck;
        latencyMs: number;
        request?: { maxTokens: number; body: Record<string, unknown> };
      }
    | { cause: string },
): Observation | undefined {
  if ('result' in attempt)
    return {
      kind: 'ok',
      latencyMs: attempt.latencyMs,
      tokensOut: attempt.result.tokensOut,
      valid: failedCheckOf(attempt.request, attempt.result) === undefined,
    };
  const failure: Record<string, FailureKind> = {
    node_error: 'error',
    node_timeout: 'timeout',
    node_disconnect: 'disconnect',
  };
  const f = failure[attempt.cause];
  return f ? { kind: 'failed', failure: f } : undefined;
}
