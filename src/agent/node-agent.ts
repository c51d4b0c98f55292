// A node agent: its own key signs every message; HTTP register and heartbeats, a WebSocket to the gateway
// with reconnect, jobs run on a runtime. Behaviour knobs (latency, failures, disconnects, slow answers) make
// it the network simulator's node; tests drive it (and its raw socket) to exercise the gateway.
import { randomInt } from 'node:crypto';
import { generatePrivateKey, privateKeyToAccount, type LocalAccount } from 'viem/accounts';
import WebSocket from 'ws';
import type { Logger } from '../platform/logger.js';
import {
  reportEip191Backend,
  verifyNetworkConfig,
  type NetworkConfigVersion,
} from '../modules/network/index.js';
import type { Environment } from '../config/vocabulary.js';
import type { Heartbeat } from '../modules/nodes/index.js';
import { NodeKey, signNodeMessage } from '../modules/network/index.js';
import type { NodeRuntime } from './node-runtime.js';
import {
  NODE_WS_PATH,
  serverFrameSchema,
  STREAM_CHAIN_START,
  streamChain,
  WS_PROTOCOL_VERSION,
  type JobDeltaFrame,
  type ErrorFrame,
  type JobFrame,
  type ServerFrame,
} from '../modules/network/index.js';

/** Bound on each register/heartbeat call. */
const HTTP_TIMEOUT_MS = 10_000;

export interface AgentBehaviour {
  latencyMs: number;
  jitterMs: number;
  /** Probabilities in [0, 1] per job: answer job.error, drop the socket mid-job, answer after the deadline. */
  failureRate: number;
  disconnectRate: number;
  slowRate: number;
  /** What the heartbeat claims (a lying node claims quality 1, latency 0); by default the truth. */
  claimedLatencyMs?: number;
}

export interface NodeAgentOptions {
  /** Backbone base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  privateKey?: `0x${string}`;
  environment: Environment;
  models: string[];
  capacity: number;
  region?: string;
  gpu?: { model: string; memoryMb: number };
  runtime: NodeRuntime;
  behaviour?: Partial<AgentBehaviour>;
  /** Overrides the interval the server returns at register. */
  heartbeatIntervalMs?: number;
  reconnectDelayMs?: number;
  log?: Logger;
  /** In [0, 1); for deterministic tests. */
  random?: () => number;
  /** Awaited before a job runs (tests hold a job on its node with it). */
  beforeRun?: (job: JobFrame) => Promise<void>;
  /** Observers (tests): each delta as it is sent, and each job once its result frame is sent. */
  onDelta?: (d: JobDeltaFrame) => void;
  onResultSent?: (job: JobFrame) => void;
}

export interface AgentCounters {
  jobs: number;
  results: number;
  errors: number;
  disconnects: number;
  slow: number;
  connects: number;
  refused: number;
}

export class NodeAgent {
  readonly account: LocalAccount;
  /** The same key, signing with libsecp256k1 (every message the agent sends). */
  private readonly key: NodeKey;
  readonly address: string;
  readonly counters: AgentCounters = {
    jobs: 0,
    results: 0,
    errors: 0,
    disconnects: 0,
    slow: 0,
    connects: 0,
    refused: 0,
  };
  /** Error frames received (newest last, bounded). */
  readonly errorFrames: ErrorFrame[] = [];
  /** Job frames received (newest last, bounded). */
  readonly jobFrames: JobFrame[] = [];
  socket: WebSocket | undefined;
  private readonly behaviour: AgentBehaviour;
  private readonly random: () => number;
  private running = false;
  private ready = false;
  private readyWaiters: Array<() => void> = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private load = 0;
  private heartbeats = 0;
  private lastHeartbeatMs = 0;
  private readonly frameListeners = new Set<(f: ServerFrame) => void>();
  /** Jobs running now, for their `job.cancel` (which aborts the runtime's signal). */
  private readonly running_ = new Map<string, { fencingToken: string; ac: AbortController }>();
  /** Jobs this agent stopped at a `job.cancel` (tests). */
  readonly cancelledJobs: string[] = [];
  /** The network's address (from register): network configs must be signed by it. */
  private networkAddress: string | undefined;
  /** The latest network config this node verified and applied. */
  config: Pick<NetworkConfigVersion, 'version' | 'digest' | 'body'> | undefined;

  constructor(private readonly opts: NodeAgentOptions) {
    const privateKey = opts.privateKey ?? generatePrivateKey();
    this.account = privateKeyToAccount(privateKey);
    this.key = new NodeKey(privateKey);
    this.address = this.key.address;
    if (opts.log) reportEip191Backend(opts.log);
    this.behaviour = {
      latencyMs: 0,
      jitterMs: 0,
      failureRate: 0,
      disconnectRate: 0,
      slowRate: 0,
      ...opts.behaviour,
    };
    this.random = opts.random ?? Math.random;
  }

  get connected(): boolean {
    return this.ready;
  }

  get heartbeatsSent(): number {
    return this.heartbeats;
  }

  /** POSTs a signed message to a node route; returns status and JSON body. */
  async post(path: string, type: string, body: unknown): Promise<{ status: number; body: unknown }> {
    const msg = await signNodeMessage(this.key, type, body);
    const res = await fetch(new URL(path, this.opts.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(msg),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  }

  /** Register, config sync, connect, first healthy heartbeat; resolves once the gateway said hello.ok. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const reg = await this.post('/v1/nodes/register', 'node.register', {
      environment: this.opts.environment,
      ...(this.opts.region ? { region: this.opts.region } : {}),
      gpuModel: this.opts.gpu?.model ?? 'sim-gpu',
      gpuMemoryMb: this.opts.gpu?.memoryMb ?? 24_576,
    });
    if (reg.status !== 200) {
      this.running = false;
      throw new Error(`register refused (${reg.status}): ${JSON.stringify(reg.body)}`);
    }
    const info = reg.body as { heartbeatIntervalMs: number; networkAddress: string };
    const interval = this.opts.heartbeatIntervalMs ?? info.heartbeatIntervalMs;
    this.networkAddress = info.networkAddress;
    await this.syncConfig();
    this.heartbeatTimer = setInterval(() => void this.heartbeat().catch(() => undefined), interval);
    this.connect();
    await this.waitReady();
    // Routable from now on: the heartbeat says healthy only while the socket is up.
    await this.heartbeat();
  }

  setBehaviour(b: Partial<AgentBehaviour>): void {
    Object.assign(this.behaviour, b);
  }

  /** Leaves the pools (a last heartbeat saying unhealthy), then closes the socket. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.reconnectTimer);
    this.ready = false;
    await this.heartbeat().catch(() => undefined);
    const ws = this.socket;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => (ws.terminate(), resolve()), 2_000);
        ws.once('close', () => (clearTimeout(t), resolve()));
        ws.close(1000, 'agent stopping');
      });
    }
    for (const w of this.readyWaiters.splice(0)) w();
  }

  /** Sends one signed heartbeat (HTTP). */
  async heartbeat(): Promise<void> {
    const hb: Heartbeat = {
      version: 1,
      address: this.address,
      // Strictly increasing per node (the server keeps the latest), even within one ms.
      timestampMs: (this.lastHeartbeatMs = Math.max(this.lastHeartbeatMs + 1, Date.now())),
      environment: this.opts.environment,
      ...(this.opts.region ? { region: this.opts.region } : {}),
      software: { agent: 'rty-node-agent/1', runtime: this.opts.runtime.name },
      gpu: {
        model: this.opts.gpu?.model ?? 'sim-gpu',
        memoryMb: this.opts.gpu?.memoryMb ?? 24_576,
        count: 1,
      },
      configDigest: this.config?.digest ?? '',
      models: this.opts.models.map((name) => ({ name, version: 'v1', active: true })),
      capacity: this.opts.capacity,
      load: this.load,
      // Without a socket the node cannot take jobs: it tells the matchmaker so.
      health: this.ready ? 'ok' : 'unhealthy',
      quality: 1,
      latencyMs: this.behaviour.claimedLatencyMs ?? this.behaviour.latencyMs,
    };
    const r = await this.post('/v1/nodes/heartbeat', 'node.heartbeat', hb);
    if (r.status !== 200) throw new Error(`heartbeat refused (${r.status}): ${JSON.stringify(r.body)}`);
    this.heartbeats += 1;
    const latest = (r.body as { configDigest?: string | null }).configDigest;
    if (latest && latest !== this.config?.digest && this.running)
      void this.syncConfig().catch((err: unknown) =>
        this.opts.log?.warn({ err, nodeId: this.address }, 'config sync failed'),
      );
  }

  /** Fetches the latest network config unless up to date; applies it only if the network key signed it. */
  async syncConfig(): Promise<void> {
    const r = await this.post('/v1/nodes/config', 'node.config', {
      ...(this.config ? { digest: this.config.digest } : {}),
    });
    if (r.status !== 200) throw new Error(`config sync refused (${r.status}): ${JSON.stringify(r.body)}`);
    const body = r.body as { upToDate: boolean; config?: NetworkConfigVersion };
    if (body.upToDate || !body.config) return;
    if (!this.networkAddress || !(await verifyNetworkConfig(body.config, this.networkAddress)))
      throw new Error(`network config ${body.config.version} is not signed by the network key`);
    const { version, digest } = body.config;
    this.config = { version, digest, body: body.config.body };
  }

  /** Resolves when the socket is open and greeted (or the agent stops). Bounded by `timeoutMs`. */
  waitReady(timeoutMs = 10_000): Promise<void> {
    if (this.ready || !this.running) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`node ${this.address} not connected in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.readyWaiters.push(() => (clearTimeout(t), resolve()));
    });
  }

  /** Every server frame (tests observe error frames through it). Returns an unsubscribe function. */
  onFrame(listener: (f: ServerFrame) => void): () => void {
    this.frameListeners.add(listener);
    return () => this.frameListeners.delete(listener);
  }

  /** Sends a frame as is (tests: forged or replayed messages). */
  sendRaw(frame: unknown): void {
    this.socket?.send(JSON.stringify(frame));
  }

  /** Drops the socket without a close handshake (a crash or a cut cable); the agent reconnects. */
  dropSocket(): void {
    this.socket?.terminate();
  }

  private connect(): void {
    if (!this.running) return;
    const wsUrl = new URL(NODE_WS_PATH, this.opts.url.replace(/^http/, 'ws'));
    const ws = new WebSocket(wsUrl);
    this.socket = ws;
    ws.on('open', () => {
      void signNodeMessage(this.key, 'node.hello', {
        environment: this.opts.environment,
        capacity: this.opts.capacity,
        models: this.opts.models,
        agent: 'rty-node-agent/1',
      }).then((m) => ws.send(JSON.stringify(m)));
    });
    ws.on('message', (data) => this.onMessage(ws, data.toString()));
    ws.on('error', (err) => this.opts.log?.debug({ err, nodeId: this.address }, 'agent socket error'));
    ws.on('close', () => {
      if (this.socket === ws && this.ready) {
        this.ready = false;
        if (this.running) void this.heartbeat().catch(() => undefined);
      }
      if (this.running && this.socket === ws) {
        this.reconnectTimer = setTimeout(() => this.connect(), this.opts.reconnectDelayMs ?? 250);
      }
    });
  }

  private onMessage(ws: WebSocket, text: string): void {
    let frame: ServerFrame;
    try {
      frame = serverFrameSchema.parse(JSON.parse(text));
    } catch (err) {
      this.opts.log?.warn({ err, nodeId: this.address }, 'unreadable server frame');
      return;
    }
    for (const l of this.frameListeners) l(frame);
    if (frame.type === 'hello.ok') {
      const reconnect = this.counters.connects > 0;
      this.ready = true;
      this.counters.connects += 1;
      for (const w of this.readyWaiters.splice(0)) w();
      if (reconnect) void this.heartbeat().catch(() => undefined);
    } else if (frame.type === 'error') {
      this.counters.refused += 1;
      keepLast(this.errorFrames, frame);
    } else if (frame.type === 'job.cancel') {
      const running = this.running_.get(frame.jobId);
      if (running?.fencingToken === frame.fencingToken) running.ac.abort();
    } else {
      keepLast(this.jobFrames, frame);
      void this.runJob(ws, frame);
    }
  }

  private async runJob(ws: WebSocket, job: JobFrame): Promise<void> {
    this.counters.jobs += 1;
    this.load += 1;
    const ac = new AbortController();
    this.running_.set(job.jobId, { fencingToken: job.fencingToken, ac });
    try {
      await this.opts.beforeRun?.(job);
      const b = this.behaviour;
      const delay = b.latencyMs + (b.jitterMs > 0 ? randomInt(0, b.jitterMs + 1) : 0);
      const roll = this.random();
      if (roll < b.disconnectRate) {
        await sleep(delay / 2);
        this.counters.disconnects += 1;
        ws.terminate();
        return;
      }
      if (roll < b.disconnectRate + b.failureRate) {
        await sleep(delay);
        this.counters.errors += 1;
        await this.reply(ws, 'job.error', {
          jobId: job.jobId,
          fencingToken: job.fencingToken,
          reason: 'simulated failure',
        });
        return;
      }
      if (roll < b.disconnectRate + b.failureRate + b.slowRate) {
        this.counters.slow += 1;
        // Bounded: at most until just past the deadline.
        await sleep(Math.min(Math.max(0, job.deadlineMs - Date.now()) + 200, 120_000));
      } else await sleep(delay, ac.signal);
      // Streamed: each piece goes out at once as a job.delta; the signed result commits to them all.
      let seq = 0;
      let hash = STREAM_CHAIN_START;
      const onDelta = (d: Pick<JobDeltaFrame, 'text' | 'toolCalls' | 'tokens'>) => {
        if (ac.signal.aborted) return; // stopped: nothing more goes out
        const frame: JobDeltaFrame = {
          v: WS_PROTOCOL_VERSION,
          type: 'job.delta',
          jobId: job.jobId,
          fencingToken: job.fencingToken,
          seq,
          ...d,
        };
        hash = streamChain(hash, frame);
        seq += 1;
        this.opts.onDelta?.(frame);
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
      };
      // A runtime stops at the signal and returns what it produced so far (see RunOptions.signal).
      const r = await this.opts.runtime.run(job.model, job.request, {
        signal: ac.signal,
        ...(job.stream ? { onDelta } : {}),
      });
      const cancelled = ac.signal.aborted;
      if (cancelled) keepLast(this.cancelledJobs, job.jobId);
      await this.reply(ws, 'job.result', {
        jobId: job.jobId,
        fencingToken: job.fencingToken,
        tokensIn: r.tokensIn,
        tokensOut: r.tokensOut,
        output: r.output,
        ...(r.embeddings ? { embeddings: r.embeddings } : {}),
        ...(r.finishReason ? { finishReason: r.finishReason } : {}),
        ...(r.toolCalls ? { toolCalls: r.toolCalls } : {}),
        ...(r.logprobs ? { logprobs: r.logprobs } : {}),
        ...(r.choices ? { choices: r.choices } : {}),
        ...(job.stream ? { stream: { count: seq, hash } } : {}),
        ...(cancelled ? { cancelled: true } : {}),
      });
      this.opts.onResultSent?.(job);
      this.counters.results += 1;
    } catch (err) {
      this.counters.errors += 1;
      const reason = (err instanceof Error ? err.message : String(err)).slice(0, 500) || 'runtime error';
      await this.reply(ws, 'job.error', { jobId: job.jobId, fencingToken: job.fencingToken, reason }).catch(
        () => undefined,
      );
    } finally {
      this.running_.delete(job.jobId);
      this.load -= 1;
    }
  }

  private async reply(ws: WebSocket, type: string, body: unknown): Promise<void> {
    const m = await signNodeMessage(this.key, type, body);
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
  }
}

function keepLast<T>(list: T[], item: T, max = 100): void {
  list.push(item);
  if (list.length > max) list.shift();
}

/** Resolves after `ms`, or at once when the signal aborts (a cancelled job goes straight to its answer). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((r) => {
    const done = () => (clearTimeout(t), signal?.removeEventListener('abort', done), r());
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
