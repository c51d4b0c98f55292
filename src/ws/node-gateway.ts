// The node gateway (io role): node WebSockets on `/v1/nodes/ws` of the HTTP server, job delivery to the
// node holding a lease, and the relay between backbone processes — a lease may name a node connected to
// another process: its owner (the nodes module's GatewayDirectory) gets the delivery on its relay channel,
// delivers it, and publishes the result back on the requester's channel. A lost relay message only times out.
import { randomUUID } from 'node:crypto';
import proxyAddr from '@fastify/proxy-addr';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Config } from '../config/config.js';
import type { Logger } from '../platform/logger.js';
import type { Metrics } from '../platform/metrics.js';
import { reportEip191Backend, type NonceStore } from '../modules/network/index.js';
import type { GatewayDirectory, Lease, NodesModule } from '../modules/nodes/index.js';
import { jobMessageSchema, type JobMessage } from '../modules/routing/index.js';
import type { NodeExecutor, NodeResult } from '../modules/jobs/index.js';
import { HelloBudget } from './hello-budget.js';
import { NodeSession, type SessionDeps } from './node-session.js';
import {
  CLOSE,
  NODE_WS_PATH,
  relayCancelSchema,
  relayMessageSchema,
  WS_PROTOCOL_VERSION,
  type RelayCancel,
  type RelayMessage,
} from '../modules/network/index.js';

/** Ownership lives GATEWAY_OWNER_TTL_MS (30 s) without a refresh. */
const OWNER_REFRESH_MS = 10_000;
/**
 * Session liveness (NODE_SESSION_LIVENESS_MS = L): pings every L/3; each L/3 the claims of sessions heard within
 * L are extended to (last heard + L), so a silent node leaves the pools within L; a socket silent for 2 L is
 * dropped.
 */
const PINGS_PER_LIVENESS = 3;
const HELLO_TIMEOUT_MS = 10_000;
/** How long stop() waits for close handshakes before terminating the sockets left. */
const CLOSE_GRACE_MS = 2_000;
/** How long a cancel that found no delivery here is kept for one that may still arrive (bounded in count). */
const EARLY_CANCEL_TTL_MS = 60_000;
const EARLY_CANCEL_MAX = 10_000;

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

interface RelayWaiter {
  resolve(r: NodeResult): void;
  reject(e: Error): void;
}

/** What the gateway uses: its limits, node ownership and relay, the shared nonce store, Redis loss notices. */
export interface GatewayDeps extends SessionDeps {
  config: SessionDeps['config'] &
    Pick<
      Config,
      | 'HTTP_BODY_LIMIT_BYTES'
      | 'HTTP_TRUSTED_PROXIES'
      | 'JOB_ATTEMPT_TIMEOUT_MS'
      | 'WS_PENDING_HELLOS_PER_ADDRESS'
      | 'WS_FAILED_HELLOS_PER_ADDRESS_PER_MIN'
      | 'NODE_SESSION_LIVENESS_MS'
    >;
  /** The node registry (hello authentication) and the session claims that make a node dispatchable. */
  nodes: SessionDeps['nodes'] & { live: Pick<NodesModule['live'], 'claimSessions'> };
  metrics: SessionDeps['metrics'] & Pick<Metrics, 'connectedNodes'>;
  directory: GatewayDirectory;
  /** Node message nonces, shared by every process (a hello replayed elsewhere is refused). */
  nonces: NonceStore;
  /** Ownership is re-asserted at once when Redis comes back or lost its data. */
  liveWatch: Pick<NodesModule['liveWatch'], 'onLoss' | 'onReconnect'>;
}

export class NodeGateway implements NodeExecutor {
  private readonly log: Logger;
  private readonly nonces: NonceStore;
  private wss: WebSocketServer | undefined;
  private server: Server | undefined;
  /** Every open socket (also those still in their hello). */
  private readonly sockets = new Set<NodeSession>();
  /** Ready sessions by node address. */
  private readonly sessions = new Map<string, NodeSession>();
  private readonly relays = new Map<string, RelayWaiter>();
  /** Cancels that came before their job's delivery (a lease taken, the frame not sent yet), oldest first. */
  private readonly earlyCancels = new Map<string, { delivered?: number; atMs: number }>();
  /** Sockets still in their hello, with the client address their budget is charged to. */
  private readonly helloAddress = new Map<NodeSession, string>();
  private readonly helloBudget: HelloBudget;
  /** The client address of an upgrade: X-Forwarded-For is read only when the peer is a trusted proxy. */
  private readonly clientAddressOf: (req: IncomingMessage) => string;
  private timers: NodeJS.Timeout[] = [];
  /** Ownership is re-asserted at once when Redis comes back or lost its data (not at the next refresh). */
  private unwatch: Array<() => void> = [];
  private state: 'idle' | 'running' | 'stopped' = 'idle';
  /** Deliveries by path since start (local socket, relayed to another process, relayed to us). */
  readonly stats = { local: 0, relayedOut: 0, relayedIn: 0 };
  /**
   * Times the pub/sub connection dropped. Pub/sub is not durable: an answer published while it was down is
   * gone, so a relay that outlived a drop and then timed out lost its answer to us, not to the node.
   */
  private subscriberDrops = 0;
  private readonly onSubscriberClose = (): void => {
    this.subscriberDrops += 1;
  };
  private unlisten: (() => Promise<void>) | undefined;

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== NODE_WS_PATH) {
      // Another upgrade handler on this server may own that path; alone, we answer it.
      if ((this.server?.listenerCount('upgrade') ?? 1) <= 1)
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    const wss = this.wss;
    if (this.state !== 'running' || !wss) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n');
      return;
    }
    // Refused before a WebSocket exists: an address that keeps failing its hello costs one line of HTTP. Behind a
    // TLS terminator every node shares the terminator's address: the budget is kept per forwarded client.
    const address = this.clientAddressOf(req);
    const admitted = this.helloBudget.admit(address);
    if (!admitted.ok) {
      this.b.metrics.nodeMessagesRejected.inc({ reason: 'hello_budget' });
      const retry = Math.max(1, Math.ceil(admitted.retryAfterMs / 1000));
      socket.end(
        `HTTP/1.1 429 Too Many Requests\r\nRetry-After: ${retry}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${admitted.why}\n`,
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, address));
  };

  private readonly onCancel = (text: string): void => {
    const c = relayCancelSchema.safeParse(safeJson(text));
    if (c.success) this.cancelHere(c.data.jobId, c.data.delivered, true);
  };

  private readonly onMessage = (text: string): void => {
    let msg: RelayMessage;
    try {
      msg = relayMessageSchema.parse(JSON.parse(text));
    } catch (err) {
      this.log.warn({ err }, 'malformed relay message ignored');
      return;
    }
    if (msg.type === 'deliver') void this.deliverRelayed(msg);
    else {
      const w = this.relays.get(msg.reqId);
      if (!w) return; // answered after the requester gave up: nothing to do
      if (msg.type === 'result') w.resolve(msg.result);
      else w.reject(new Error(msg.reason));
    }
  };

  constructor(private readonly b: GatewayDeps) {
    this.log = b.log.child({ component: 'node-gateway' });
    this.nonces = b.nonces;
    reportEip191Backend(this.log);
    this.helloBudget = new HelloBudget({
      maxPending: b.config.WS_PENDING_HELLOS_PER_ADDRESS,
      maxFailures: b.config.WS_FAILED_HELLOS_PER_ADDRESS_PER_MIN,
      windowMs: 60_000,
    });
    const proxies = b.config.HTTP_TRUSTED_PROXIES;
    const trust = proxies.length > 0 ? proxyAddr.compile([...proxies]) : undefined;
    this.clientAddressOf = trust
      ? (req) => proxyAddr(req, trust)
      : (req) => req.socket.remoteAddress ?? 'unknown';
  }

  /** Connected (ready) nodes on this process. */
  get connectedNodes(): string[] {
    return [...this.sessions.keys()];
  }

  /** The node's socket is open on this process (what the node HTTP routes ask). */
  isConnectedHere(address: string): boolean {
    return this.sessions.has(address);
  }

  async start(): Promise<void> {
    if (this.state !== 'idle') return;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.b.config.HTTP_BODY_LIMIT_BYTES });
    this.unlisten = await this.b.directory.listen(
      { message: this.onMessage, cancel: this.onCancel },
      this.onSubscriberClose,
    );
    const liveness = this.b.config.NODE_SESSION_LIVENESS_MS;
    this.timers = [
      setInterval(() => void this.refreshOwnership(), OWNER_REFRESH_MS),
      setInterval(
        () => {
          this.sockets.forEach((s) => s.ping(2 * liveness));
          void this.refreshSessions();
        },
        Math.floor(liveness / PINGS_PER_LIVENESS),
      ),
    ];
    this.timers.forEach((t) => t.unref());
    const watch = this.b.liveWatch;
    this.unwatch = [
      watch.onLoss(() => this.refreshOwnership()),
      watch.onReconnect(() => this.refreshOwnership()),
    ];
    this.state = 'running';
  }

  attach(server: Server): void {
    this.server = server;
    server.on('upgrade', this.onUpgrade);
  }

  /** Stops accepting, releases ownership, closes every socket with 1001, rejects what is pending. Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    const wasRunning = this.state === 'running';
    this.state = 'stopped';
    this.timers.forEach((t) => clearInterval(t));
    this.unwatch.forEach((f) => f());
    this.server?.off('upgrade', this.onUpgrade);
    if (!wasRunning) return;
    const nodes = [...this.sessions.keys()];
    await Promise.allSettled([
      ...nodes.map((n) => this.releaseOwnership(n)),
      this.claimSessions('close', [...this.sessions.values()]),
    ]);
    const closed = [...this.sockets].map(
      (s) => new Promise<void>((resolve) => s.ws.once('close', () => resolve())),
    );
    for (const s of this.sockets) s.close(CLOSE.goingAway, 'server shutting down');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(closed),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
    ]);
    clearTimeout(timer);
    for (const s of this.sockets) s.ws.terminate();
    for (const [reqId, w] of [...this.relays]) {
      this.relays.delete(reqId);
      w.reject(new Error('node gateway stopped'));
    }
    await this.unlisten?.();
    await new Promise<void>((resolve) => (this.wss ? this.wss.close(() => resolve()) : resolve()));
    this.b.metrics.connectedNodes.set(0);
  }

  /** Delivers the job to the node holding the lease, here or through the process its socket is on. */
  async run(lease: Lease, job: JobMessage, signal: AbortSignal): Promise<NodeResult> {
    if (signal.aborted) throw new Error(`delivery of ${job.jobId} aborted`);
    if (this.state !== 'running') throw new Error('node gateway is not running');
    const deadlineMs = Date.now() + this.b.config.JOB_ATTEMPT_TIMEOUT_MS;
    const local = this.sessions.get(lease.nodeAddress);
    if (local) {
      this.stats.local += 1;
      return local.deliver(lease, job, deadlineMs, signal);
    }
    const owner = await this.b.directory.ownerOf(lease.nodeAddress);
    if (!owner || owner === this.b.instanceId)
      throw new Error(`node ${lease.nodeAddress} is not connected to any gateway`);
    return this.relay(owner, lease, job, deadlineMs, signal);
  }

  private async relay(
    owner: string,
    lease: Lease,
    job: JobMessage,
    deadlineMs: number,
    signal: AbortSignal,
  ): Promise<NodeResult> {
    const reqId = randomUUID();
    this.stats.relayedOut += 1;
    const drops = this.subscriberDrops;
    const answer = new Promise<NodeResult>((resolve, reject) => {
      const done = () => {
        this.relays.delete(reqId);
        signal.removeEventListener('abort', onAbort);
        clearTimeout(timer);
      };
      const onAbort = () => {
        done();
        // The node's own timeout comes back as a `fail` from the owner; silence across a drop is ours.
        reject(
          new Error(
            this.subscriberDrops !== drops
              ? `relay answer of ${job.jobId} lost: the Redis pub/sub connection dropped during the delivery`
              : `relayed delivery of ${job.jobId} aborted`,
          ),
        );
      };
      // Backstop in case the caller's signal never fires: a lost relay message must not leak a waiter.
      const timer = setTimeout(onAbort, Math.max(0, deadlineMs - Date.now()) + 1_000);
      signal.addEventListener('abort', onAbort, { once: true });
      this.relays.set(reqId, {
        resolve: (r) => (done(), resolve(r)),
        reject: (e) => (done(), reject(e)),
      });
    });
    const msg: RelayMessage = {
      v: WS_PROTOCOL_VERSION,
      type: 'deliver',
      reqId,
      replyTo: this.b.instanceId,
      lease,
      job,
      deadlineMs,
    };
    // `answer` can settle before it is awaited below (its backstop timer or the caller's abort while the publish
    // is stuck on a Redis that went away): it always has a handler, or its rejection would kill the process.
    answer.catch(() => undefined);
    let receivers: number;
    try {
      receivers = await this.b.directory.publish(owner, JSON.stringify(msg));
    } catch (err) {
      // Clears the waiter, its timer and its abort listener.
      this.relays.get(reqId)?.reject(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
    if (receivers === 0) this.relays.get(reqId)?.reject(new Error(`gateway ${owner} is unreachable`));
    return answer;
  }

  /**
   * Stops a job on its node: at once when the node's socket is here, else broadcast to every gateway (one
   * PUBLISH, only on a cancel: nothing is added to the job path). Works in a process without the io role too.
   */
  async cancel(jobId: string, delivered?: number): Promise<void> {
    if (this.cancelHere(jobId, delivered, false)) return;
    const msg: RelayCancel = {
      v: WS_PROTOCOL_VERSION,
      type: 'cancel',
      jobId,
      ...(delivered !== undefined ? { delivered } : {}),
    };
    await this.b.directory.broadcastCancel(JSON.stringify(msg));
  }

  /** Cuts the job's delivery if a session here holds it; a broadcast that finds none is kept for a while. */
  private cancelHere(jobId: string, delivered: number | undefined, remember: boolean): boolean {
    for (const s of this.sessions.values()) if (s.cancel(jobId, delivered)) return true;
    if (!remember || this.state !== 'running') return false;
    const now = Date.now();
    for (const [id, c] of this.earlyCancels) {
      if (now - c.atMs < EARLY_CANCEL_TTL_MS && this.earlyCancels.size < EARLY_CANCEL_MAX) break;
      this.earlyCancels.delete(id);
    }
    this.earlyCancels.set(jobId, { ...(delivered !== undefined ? { delivered } : {}), atMs: now });
    return false;
  }

  private takeCancel(jobId: string): { delivered?: number } | undefined {
    const c = this.earlyCancels.get(jobId);
    if (!c) return undefined;
    this.earlyCancels.delete(jobId);
    return Date.now() - c.atMs < EARLY_CANCEL_TTL_MS ? c : undefined;
  }

  /** The owner's side of a relay: deliver to the local socket, answer on the requester's channel. */
  private async deliverRelayed(msg: Extract<RelayMessage, { type: 'deliver' }>): Promise<void> {
    const reply = (m: { type: 'result'; result: NodeResult } | { type: 'fail'; reason: string }) =>
      this.b.directory
        .publish(msg.replyTo, JSON.stringify({ v: WS_PROTOCOL_VERSION, reqId: msg.reqId, ...m }))
        .catch((err: unknown) => this.log.warn({ err }, 'relay answer not published'));
    const job = jobMessageSchema.safeParse(msg.job);
    const session = this.sessions.get(msg.lease.nodeAddress);
    if (!job.success || !session || this.state !== 'running') {
      await reply({ type: 'fail', reason: `node ${msg.lease.nodeAddress} is not connected here` });
      return;
    }
    this.stats.relayedIn += 1;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), Math.max(0, msg.deadlineMs - Date.now()));
    try {
      const result = await session.deliver(msg.lease as Lease, job.data, msg.deadlineMs, ac.signal);
      await reply({ type: 'result', result });
    } catch (err) {
      await reply({ type: 'fail', reason: err instanceof Error ? err.message : String(err) });
    } finally {
      clearTimeout(timer);
    }
  }

  private accept(ws: WebSocket, address: string): void {
    if (this.state !== 'running') {
      this.helloBudget.settled(address, false);
      ws.close(CLOSE.goingAway, 'server shutting down');
      return;
    }
    const session = new NodeSession(
      ws,
      this.b,
      this.nonces,
      {
        onReady: (s) => this.register(s),
        onClose: (s) => this.unregister(s),
        takeCancel: (jobId) => this.takeCancel(jobId),
      },
      HELLO_TIMEOUT_MS,
    );
    this.sockets.add(session);
    this.helloAddress.set(session, address);
  }

  /**
   * The socket's hello is over: authenticated (ready) or closed before it. Its address is charged a failure
   * only when the client caused it (see NodeSession.helloClientFault): a store outage or our shutdown must not
   * lock every node behind one address out.
   */
  private helloSettled(s: NodeSession): void {
    const address = this.helloAddress.get(s);
    if (address === undefined) return;
    this.helloAddress.delete(s);
    this.helloBudget.settled(address, s.helloClientFault);
  }

  private async register(s: NodeSession): Promise<void> {
    this.helloSettled(s);
    const node = s.node!;
    const previous = this.sessions.get(node);
    this.sessions.set(node, s);
    // A node reconnecting (or a second socket of the same key) replaces the older session.
    if (previous && previous !== s) previous.close(CLOSE.replaced, 'replaced by a newer connection');
    this.b.metrics.connectedNodes.set(this.sessions.size);
    await Promise.all([this.b.directory.claim(node), this.claimSessions('open', [s])]);
    // Closed while the claim was on its way: take it back, or relays would come here for GATEWAY_OWNER_TTL_MS.
    if (this.sessions.get(node) !== s) {
      await this.releaseOwnership(node);
      await this.claimSessions('close', [s]);
    }
    this.log.debug({ nodeId: node }, 'node connected');
  }

  private unregister(s: NodeSession): void {
    this.sockets.delete(s);
    this.helloSettled(s);
    const node = s.node;
    if (!node || this.sessions.get(node) !== s) return;
    this.sessions.delete(node);
    this.b.metrics.connectedNodes.set(this.sessions.size);
    if (this.state === 'running')
      void Promise.all([this.releaseOwnership(node), this.claimSessions('close', [s])]).catch(
        (err: unknown) => this.log.warn({ err, nodeId: node }, 'gateway ownership not released'),
      );
    this.log.debug({ nodeId: node }, 'node disconnected');
  }

  private async releaseOwnership(node: string): Promise<void> {
    await this.b.directory.release(node);
  }

  /**
   * Writes the liveness claims of sessions (see PINGS_PER_LIVENESS): open and refresh claim until last heard +
   * NODE_SESSION_LIVENESS_MS; a session not heard within that bound is not refreshed and lapses.
   */
  private async claimSessions(op: 'open' | 'refresh' | 'close', list: NodeSession[]): Promise<void> {
    const liveness = this.b.config.NODE_SESSION_LIVENESS_MS;
    const now = Date.now();
    const items = list.flatMap((s) => {
      const forMs = liveness - (now - s.lastHeardMs);
      return s.node && s.hello && (op === 'close' || forMs > 0)
        ? [{ environment: s.hello.environment, address: s.node, forMs }]
        : [];
    });
    if (items.length > 0) await this.b.nodes.live.claimSessions(op, this.b.instanceId, items);
  }

  private async refreshSessions(): Promise<void> {
    await this.claimSessions('refresh', [...this.sessions.values()]).catch((err: unknown) =>
      this.log.warn({ err }, 'session liveness not refreshed'),
    );
  }

  /**
   * Re-asserts ownership of every node connected here. The newest connection of a node wins (register
   * overwrites); a half-open older socket elsewhere loses its claim within two ping intervals, when it closes.
   */
  private async refreshOwnership(): Promise<void> {
    const nodes = [...this.sessions.keys()];
    if (nodes.length === 0) return;
    await this.b.directory
      .refresh(nodes)
      .catch((err: unknown) => this.log.warn({ err }, 'gateway ownership not refreshed'));
    await this.refreshSessions();
  }
}
