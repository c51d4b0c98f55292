// One node's WebSocket on this process: the hello handshake (signed, bound node), job deliveries with their
// pending map (job id → fencing token), and the signed results that settle them. A result is accepted only
// for a delivery this session holds with the same fencing token; anything else changes nothing.
import type { WebSocket, RawData } from 'ws';
import { AppError, isAppError } from '../platform/errors.js';
import type { Logger } from '../platform/logger.js';
import {
  SessionNonceWindow,
  verifyNodeMessage,
  type NonceStore,
  type SignedNodeMessage,
} from '../modules/network/index.js';
import type { Lease } from '../modules/nodes/index.js';
import type { JobMessage } from '../modules/routing/index.js';
import { deltaBytes, outputByteLimit, type JobStreams, type NodeResult } from '../modules/jobs/index.js';
import type { Config } from '../config/config.js';
import type { Metrics } from '../platform/metrics.js';
import type { NodeAuthDeps } from '../modules/network/index.js';
import { authenticateNodeMessage, rejectReasonOf } from '../modules/network/index.js';
import {
  CLOSE,
  helloBodySchema,
  jobDeltaFrameSchema,
  STREAM_CHAIN_START,
  streamChain,
  jobErrorBodySchema,
  jobResultBodySchema,
  NODE_WS_TYPES,
  WS_PROTOCOL_VERSION,
  type HelloBody,
  type JobFrame,
  type JobResultBody,
  type RejectReason,
  type ServerFrame,
} from '../modules/network/index.js';

/** A socket holding more unsent bytes than this is congested: new deliveries go to other nodes. */
export const MAX_BUFFERED_BYTES = 1 << 20;
/** How long a node has to answer a `job.cancel` before its delivery is cut without its answer (and it is penalized). */
export const CANCEL_GRACE_MS = 3_000;

interface Pending {
  fencingToken: string;
  /** The most output bytes the request allows: a stream past it is refused at once. */
  byteLimit: number;
  resolve(r: NodeResult): void;
  reject(e: Error): void;
  /**
   * Set when the job frame asked for deltas: what was received so far, checked against the result; `ends` and
   * `tokens` are, after each delta, the text length and the output tokens so far (what a cut bills).
   */
  stream?: {
    next: number;
    hash: string;
    text: string;
    bytes: number;
    ends: number[];
    tokens: number[];
    timer?: NodeJS.Timeout;
  };
  /** Set once the job is cancelled: `delivered` deltas reached the client (absent: all that come). */
  cut?: { delivered?: number; timer: NodeJS.Timeout };
}

class WrongNode extends Error {}

/** What a node session uses: its limits, the node registry (hello authentication), metrics and job streams. */
export interface SessionDeps extends NodeAuthDeps {
  config: Pick<
    Config,
    'NODE_INTER_TOKEN_TIMEOUT_MS' | 'NODE_MESSAGE_MAX_SKEW_MS' | 'WS_MAX_IN_FLIGHT_PER_NODE'
  >;
  log: Logger;
  instanceId: string;
  metrics: Pick<Metrics, 'dispatchLatency' | 'nodeMessagesRejected'>;
  streams: Pick<JobStreams, 'emit'>;
}

export interface SessionHooks {
  /** The node proved who it is; register the session (may throw to refuse it). */
  onReady(s: NodeSession): Promise<void>;
  onClose(s: NodeSession): void;
  /** A cancel of this job that arrived before its delivery (the delivery is then cut at once). */
  takeCancel?(jobId: string): { delivered?: number } | undefined;
}

export class NodeSession {
  node: string | undefined;
  hello: HelloBody | undefined;
  /**
   * The hello failed by the client's doing: a frame that is not a hello, a malformed or wrongly signed hello, a
   * stale timestamp, a replayed nonce, an unbound key, or no hello at all in time. A failure on our side (a store
   * down, a slow verification, our shutdown) leaves it false: the address's hello budget is not charged for it.
   */
  helloClientFault = false;
  private state: 'new' | 'verifying' | 'ready' | 'closed' = 'new';
  private readonly pending = new Map<string, Pending>();
  /** When the node was last heard (any frame or pong, this process's clock): its session's liveness. */
  lastHeardMs = Date.now();
  private log: Logger;
  private readonly helloTimer: NodeJS.Timeout;
  /** Job-message nonces of this session (the hello's nonce goes to the shared store: see SessionNonceWindow). */
  private readonly jobNonces: SessionNonceWindow;

  constructor(
    readonly ws: WebSocket,
    private readonly b: SessionDeps,
    private readonly nonces: NonceStore,
    private readonly hooks: SessionHooks,
    helloTimeoutMs: number,
  ) {
    this.log = b.log.child({ component: 'node-session' });
    this.jobNonces = new SessionNonceWindow(b.config.NODE_MESSAGE_MAX_SKEW_MS * 2);
    this.helloTimer = setTimeout(() => {
      // Still 'verifying' at the timeout means our verification was slow: not the client's fault.
      if (this.state === 'new') this.helloClientFault = true;
      if (this.state === 'new' || this.state === 'verifying')
        this.refuse('hello_required', 'no node.hello in time', CLOSE.helloTimeout);
    }, helloTimeoutMs);
    ws.on('message', (data: RawData) => {
      this.lastHeardMs = Date.now();
      void this.onFrame(data);
    });
    ws.on('pong', () => (this.lastHeardMs = Date.now()));
    ws.on('close', () => this.closed());
    ws.on('error', (err) => this.log.debug({ err, nodeId: this.node }, 'node socket error'));
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Called every ping interval: terminates a socket silent for longer than `deadAfterMs`, pings the others. */
  ping(deadAfterMs: number): void {
    if (Date.now() - this.lastHeardMs > deadAfterMs) {
      this.ws.terminate();
      return;
    }
    this.ws.ping();
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  /** Sends the job to the node; resolves with its verified result, rejects on error, disconnect or abort. */
  deliver(lease: Lease, job: JobMessage, deadlineMs: number, signal: AbortSignal): Promise<NodeResult> {
    const node = lease.nodeAddress;
    if (this.state !== 'ready') return Promise.reject(new Error(`node ${node} is not connected`));
    if (!job.request) return Promise.reject(new Error(`job ${job.jobId} carries no request`));
    if (this.pending.has(job.jobId))
      return Promise.reject(new Error(`job ${job.jobId} is already delivered to ${node}`));
    if (this.pending.size >= this.b.config.WS_MAX_IN_FLIGHT_PER_NODE)
      return Promise.reject(new Error(`node ${node} has ${this.pending.size} jobs in flight (the limit)`));
    if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES)
      return Promise.reject(new Error(`node ${node} socket is congested`));
    if (signal.aborted) return Promise.reject(new Error(`delivery of ${job.jobId} aborted`));
    const streamed = job.request.kind !== 'embedding' && job.request.body.stream === true;
    const frame: JobFrame = {
      v: WS_PROTOCOL_VERSION,
      type: 'job',
      jobId: job.jobId,
      fencingToken: lease.fencingToken,
      model: job.model,
      request: job.request,
      deadlineMs,
      ...(streamed ? { stream: true } : {}),
    };
    return new Promise<NodeResult>((resolve, reject) => {
      const onAbort = () => settle(() => reject(new Error(`delivery of ${job.jobId} aborted`)));
      const settle = (fn: () => void) => {
        if (this.pending.get(job.jobId) !== entry) return;
        this.pending.delete(job.jobId);
        signal.removeEventListener('abort', onAbort);
        clearTimeout(entry.stream?.timer);
        clearTimeout(entry.cut?.timer);
        fn();
      };
      const entry: Pending = {
        fencingToken: lease.fencingToken,
        byteLimit: outputByteLimit(job.request!),
        resolve: (r) => settle(() => resolve(r)),
        reject: (e) =>
          settle(() => {
            // The client saw part of an output that will not be the job's: it must drop it.
            if (entry.stream && entry.stream.next > 0)
              this.b.streams.emit(job.jobId, { type: 'reset', reason: e.message });
            reject(e);
          }),
        ...(streamed
          ? { stream: { next: 0, hash: STREAM_CHAIN_START, text: '', bytes: 0, ends: [], tokens: [] } }
          : {}),
      };
      this.pending.set(job.jobId, entry);
      signal.addEventListener('abort', onAbort, { once: true });
      this.ws.send(JSON.stringify(frame), (err) => {
        if (err) entry.reject(new Error(`job frame not sent to ${node}: ${err.message}`));
      });
      // Cancelled while on its way here: the node gets the job and its cancel right after (frames keep order).
      const early = this.hooks.takeCancel?.(job.jobId);
      if (early) this.cancel(job.jobId, early.delivered);
      const enqueued = Date.parse(job.enqueuedAt);
      if (Number.isFinite(enqueued))
        this.b.metrics.dispatchLatency.observe(Math.max(0, Date.now() - enqueued) / 1000);
    });
  }

  /**
   * Cancels a delivery this session holds: the node is told to stop (`job.cancel`), and the delivery resolves
   * with its answer cut to what was `delivered` (see cutResult), or without it after CANCEL_GRACE_MS. Deltas
   * past `delivered` are no longer forwarded (nobody reads them). False when the job is not held here.
   */
  cancel(jobId: string, delivered?: number): boolean {
    const p = this.pending.get(jobId);
    if (!p) return false;
    if (p.cut) return true;
    clearTimeout(p.stream?.timer);
    p.cut = {
      ...(delivered !== undefined ? { delivered } : {}),
      timer: setTimeout(() => p.resolve(this.cutResult(p, undefined, false)), CANCEL_GRACE_MS),
    };
    this.send({ v: WS_PROTOCOL_VERSION, type: 'job.cancel', jobId, fencingToken: p.fencingToken });
    return true;
  }

  /**
   * A cancelled delivery's result: the first `delivered` deltas (their text, and their tokens: each delta's
   * count, default 1, at most its bytes), never more output tokens than the node says it produced; a job not
   * streamed keeps the node's partial output unless nothing was delivered. The prompt tokens are the node's
   * (the usage bounds cap them later); a node that never answered gets none and is penalized.
   */
  private cutResult(p: Pending, r: JobResultBody | undefined, answered: boolean): NodeResult {
    const st = p.stream;
    const delivered = p.cut?.delivered;
    const base = { tokensIn: r?.tokensIn ?? 0, cancelled: true as const };
    const violation = answered ? {} : { violation: `did not answer the cancel within ${CANCEL_GRACE_MS} ms` };
    // A node that streamed nothing and answered whole (an agent without streaming) is cut like an unstreamed job.
    if (st && !(st.next === 0 && r && r.stream === undefined)) {
      const k = Math.min(delivered ?? st.next, st.next);
      const all = k === st.next && r !== undefined;
      return {
        ...base,
        tokensOut: Math.min(k === 0 ? 0 : st.tokens[k - 1]!, r?.tokensOut ?? Number.POSITIVE_INFINITY),
        output: k === 0 ? '' : st.text.slice(0, st.ends[k - 1]),
        ...(all && r.finishReason ? { finishReason: r.finishReason } : {}),
        ...(all && r.toolCalls ? { toolCalls: r.toolCalls } : {}),
        ...violation,
      };
    }
    if (!r || delivered === 0) return { ...base, tokensOut: 0, output: '', ...violation };
    return {
      ...base,
      tokensOut: r.tokensOut,
      output: r.output,
      ...(r.finishReason ? { finishReason: r.finishReason } : {}),
      ...(r.toolCalls ? { toolCalls: r.toolCalls } : {}),
    };
  }

  private send(frame: ServerFrame): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(frame));
  }

  /** Sends an error frame naming the reason and counts it; closes the socket when `closeCode` is given. */
  private refuse(reason: RejectReason, message: string, closeCode?: number, jobId?: string): void {
    this.b.metrics.nodeMessagesRejected.inc({ reason });
    this.send({ v: WS_PROTOCOL_VERSION, type: 'error', reason, message, ...(jobId ? { jobId } : {}) });
    if (closeCode !== undefined) this.ws.close(closeCode, reason);
  }

  private async onFrame(data: RawData): Promise<void> {
    let raw: unknown;
    try {
      raw = JSON.parse(data.toString());
    } catch {
      // Before the hello, the first frame that is not one ends the socket (no budget of answered junk).
      if (this.state === 'ready') this.refuse('malformed', 'frames are JSON');
      else if (this.state !== 'closed') {
        this.helloClientFault = true;
        this.refuse('hello_required', 'the first frame must be a signed node.hello (JSON)', CLOSE.policy);
      }
      return;
    }
    const type = (raw as { type?: unknown } | null)?.type;
    if (this.state === 'closed') return;
    if (this.state !== 'ready') {
      if (this.state === 'verifying' || type !== NODE_WS_TYPES.hello) {
        this.helloClientFault = true;
        this.refuse('hello_required', 'the first frame must be a signed node.hello', CLOSE.policy);
        return;
      }
      await this.onHello(raw);
      return;
    }
    if (type === NODE_WS_TYPES.delta) this.onDelta(raw);
    else if (type === NODE_WS_TYPES.result || type === NODE_WS_TYPES.error) await this.onJobReply(raw);
    else this.refuse('unknown_type', `unexpected frame type ${String(type)}`);
  }

  private async onHello(raw: unknown): Promise<void> {
    this.state = 'verifying';
    try {
      const { message, node } = await authenticateNodeMessage(this.b, this.nonces, raw, NODE_WS_TYPES.hello);
      const body = helloBodySchema.safeParse(message.body);
      if (!body.success) throw new AppError('invalid_request', 'node.hello body is malformed');
      if (body.data.environment !== node.environment)
        throw new AppError('invalid_request', `node ${node.address} is registered on ${node.environment}`);
      if (this.state !== 'verifying') return; // closed meanwhile
      this.node = message.node;
      this.hello = body.data;
      this.log = this.log.child({ nodeId: this.node });
      this.state = 'ready';
      clearTimeout(this.helloTimer);
      await this.hooks.onReady(this);
      this.send({
        v: WS_PROTOCOL_VERSION,
        type: 'hello.ok',
        node: message.node,
        instance: this.b.instanceId,
        maxInFlight: this.b.config.WS_MAX_IN_FLIGHT_PER_NODE,
      });
    } catch (err) {
      // Only the verdicts on what the client sent; a store error or a failed registration is ours.
      this.helloClientFault =
        this.state === 'verifying' &&
        isAppError(err) &&
        (err.code === 'invalid_request' || err.code === 'unauthorized' || err.code === 'node_not_registered');
      const reason = rejectReasonOf(err);
      const code =
        reason === 'node_not_registered'
          ? CLOSE.notRegistered
          : reason === 'malformed'
            ? CLOSE.policy
            : CLOSE.unauthorized;
      this.refuse(reason, err instanceof Error ? err.message : String(err), code);
    }
  }

  /**
   * A streamed delta: accepted only for a streamed delivery this session holds with that fencing token, and
   * only as the next in order (a gap or a reorder fails the attempt: the result could not match). Forwarded
   * to the client at once; the signed result is checked against the chain of what was forwarded.
   */
  private onDelta(raw: unknown): void {
    const parsed = jobDeltaFrameSchema.safeParse(raw);
    if (!parsed.success) {
      this.refuse('malformed', `job.delta: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
      return;
    }
    const d = parsed.data;
    const p = this.pending.get(d.jobId);
    if (!p || p.fencingToken !== d.fencingToken || !p.stream) {
      this.refuse(
        'not_lease_holder',
        `node ${this.node} holds no streamed delivery of job ${d.jobId} with fencing token ${d.fencingToken}`,
        undefined,
        d.jobId,
      );
      return;
    }
    const st = p.stream;
    if (d.seq !== st.next) {
      p.reject(new Error(`node ${this.node} sent delta ${d.seq} of job ${d.jobId}; expected ${st.next}`));
      return;
    }
    const delta = {
      seq: d.seq,
      ...(d.text !== undefined ? { text: d.text } : {}),
      ...(d.toolCalls ? { toolCalls: d.toolCalls } : {}),
    };
    const size = deltaBytes(d);
    st.next += 1;
    st.hash = streamChain(st.hash, d.tokens === undefined ? delta : { ...delta, tokens: d.tokens });
    st.text += d.text ?? '';
    st.bytes += size;
    st.ends.push(st.text.length);
    st.tokens.push((st.tokens.at(-1) ?? 0) + Math.min(d.tokens ?? 1, size));
    if (st.bytes > p.byteLimit) {
      p.reject(
        new Error(
          `node ${this.node} streamed ${st.bytes} bytes for job ${d.jobId}: more than its max_tokens can produce (${p.byteLimit})`,
        ),
      );
      return;
    }
    if (p.cut) {
      // Cancelled: forwarded only while the client still reads (a POST cancel), never past what it received.
      if (p.cut.delivered === undefined) this.b.streams.emit(d.jobId, { type: 'delta', ...delta });
      return;
    }
    this.b.streams.emit(d.jobId, { type: 'delta', ...delta });
    clearTimeout(st.timer);
    const gap = this.b.config.NODE_INTER_TOKEN_TIMEOUT_MS;
    st.timer = setTimeout(
      () => p.reject(new Error(`node ${this.node} timed out: no delta of job ${d.jobId} for ${gap} ms`)),
      gap,
    );
  }

  private async onJobReply(raw: unknown): Promise<void> {
    let m: SignedNodeMessage;
    try {
      m = await verifyNodeMessage(raw, {
        nowMs: Date.now(),
        maxSkewMs: this.b.config.NODE_MESSAGE_MAX_SKEW_MS,
        nonces: this.jobNonces,
        // Another key's message never reaches the nonce window of this session.
        authorize: (msg) =>
          msg.node === this.node
            ? Promise.resolve()
            : Promise.reject(new WrongNode(`this socket belongs to ${this.node}, not ${msg.node}`)),
      });
    } catch (err) {
      if (err instanceof WrongNode) {
        this.refuse('wrong_node', err.message);
        return;
      }
      this.refuse(rejectReasonOf(err), err instanceof Error ? err.message : String(err));
      return;
    }
    const isResult = m.type === NODE_WS_TYPES.result;
    const parsed = (isResult ? jobResultBodySchema : jobErrorBodySchema).safeParse(m.body);
    if (!parsed.success) {
      this.refuse('malformed', `${m.type} body: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
      return;
    }
    const { jobId, fencingToken } = parsed.data;
    const p = this.pending.get(jobId);
    if (!p || p.fencingToken !== fencingToken) {
      this.refuse(
        'not_lease_holder',
        `node ${m.node} does not hold job ${jobId} with fencing token ${fencingToken}`,
        undefined,
        jobId,
      );
      return;
    }
    if (isResult) {
      const r = jobResultBodySchema.parse(m.body);
      const st = p.stream;
      // A node that streamed nothing and commits to nothing (an agent without streaming) is answered whole.
      const unstreamed = st?.next === 0 && r.stream === undefined;
      if (
        st &&
        !unstreamed &&
        (r.stream?.count !== st.next || r.stream.hash !== st.hash || r.output !== st.text)
      ) {
        // Signed by the node, yet not what it streamed: the client got something else than what is billed.
        p.reject(
          new Error(
            `node ${m.node} result of job ${jobId} does not match its stream (${st.next} deltas received)`,
          ),
        );
        return;
      }
      if (p.cut) {
        p.resolve(this.cutResult(p, r, true));
        return;
      }
      p.resolve({
        tokensIn: r.tokensIn,
        tokensOut: r.tokensOut,
        output: r.output,
        ...(r.embeddings ? { embeddings: r.embeddings } : {}),
        ...(r.finishReason ? { finishReason: r.finishReason } : {}),
        ...(r.toolCalls ? { toolCalls: r.toolCalls } : {}),
        ...(r.logprobs ? { logprobs: r.logprobs } : {}),
        ...(r.choices ? { choices: r.choices } : {}),
      });
    } else if (p.cut)
      // Stopped by the cancel (an agent whose runtime fails on abort): cut without its usage, not penalized.
      p.resolve(this.cutResult(p, undefined, true));
    else
      p.reject(new Error(`node ${m.node} failed job ${jobId}: ${jobErrorBodySchema.parse(m.body).reason}`));
  }

  private closed(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.helloTimer);
    // Reject at once: the job is retried on another node without waiting for its timeout.
    // A cancelled delivery is cut at what was delivered instead (a retry of a cancelled job would be wasted).
    for (const p of [...this.pending.values()])
      if (p.cut) p.resolve(this.cutResult(p, undefined, false));
      else p.reject(new Error(`node ${this.node} disconnected`));
    this.hooks.onClose(this);
  }
}
