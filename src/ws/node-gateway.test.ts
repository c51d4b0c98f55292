// The node gateway's delivery logic on in-memory fakes of its ports (no store): a node connected nowhere, the
// relay to the process that owns the node and its refusal, an owner nobody listens for, an answer lost to a
// pub/sub drop (our fault, not the node's), and a stop that rejects what is still waiting.
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../platform/logger.js';
import { Metrics } from '../platform/metrics.js';
import type { GatewayDirectory, Lease } from '../modules/nodes/index.js';
import type { JobMessage } from '../modules/routing/index.js';
import { NodeGateway, type GatewayDeps } from './node-gateway.js';

/** Ownership keys and relay channels of several processes, in memory. */
class FakeNetwork {
  readonly owners = new Map<string, string>();
  readonly listeners = new Map<string, { onMessage(text: string): void; onDrop(): void }>();
  /** Relay messages published, by receiving instance. */
  readonly published: Array<{ to: string; text: string }> = [];

  directory(instanceId: string): GatewayDirectory {
    return {
      claim: async (node) => void this.owners.set(node, instanceId),
      release: async (node) => {
        if (this.owners.get(node) === instanceId) this.owners.delete(node);
      },
      refresh: async (nodes) => nodes.forEach((n) => this.owners.set(n, instanceId)),
      ownerOf: async (node) => this.owners.get(node) ?? null,
      publish: async (to, text) => {
        this.published.push({ to, text });
        const l = this.listeners.get(to);
        // Delivered asynchronously, like pub/sub.
        if (l) setImmediate(() => l.onMessage(text));
        return l ? 1 : 0;
      },
      broadcastCancel: async (text) => {
        this.published.push({ to: '*', text });
        return this.listeners.size;
      },
      listen: async (on, onDrop) => {
        this.listeners.set(instanceId, { onMessage: on.message, onDrop });
        return async () => void this.listeners.delete(instanceId);
      },
    };
  }

  /** The pub/sub connection of a process drops (what was published meanwhile is lost). */
  drop(instanceId: string): void {
    this.listeners.get(instanceId)?.onDrop();
  }
}

const log = createLogger('silent');
const gateways: NodeGateway[] = [];

function gateway(net: FakeNetwork, instanceId: string): NodeGateway {
  const deps: GatewayDeps = {
    config: {
      NODE_INTER_TOKEN_TIMEOUT_MS: 5_000,
      NODE_MESSAGE_MAX_SKEW_MS: 30_000,
      WS_MAX_IN_FLIGHT_PER_NODE: 4,
      HTTP_BODY_LIMIT_BYTES: 1 << 20,
      HTTP_TRUSTED_PROXIES: [],
      JOB_ATTEMPT_TIMEOUT_MS: 5_000,
      WS_PENDING_HELLOS_PER_ADDRESS: 4,
      WS_FAILED_HELLOS_PER_ADDRESS_PER_MIN: 10,
      NODE_SESSION_LIVENESS_MS: 15_000,
    },
    log,
    instanceId,
    metrics: new Metrics(),
    streams: { emit: () => undefined },
    nodes: { admin: { findNode: async () => undefined }, live: { claimSessions: async () => [] } },
    directory: net.directory(instanceId),
    nonces: { claim: async () => true },
    liveWatch: { onLoss: () => () => undefined, onReconnect: () => () => undefined },
  };
  const g = new NodeGateway(deps);
  gateways.push(g);
  return g;
}

const node = '0x00000000000000000000000000000000000000aa';
const lease: Lease = {
  jobId: 'job-1',
  environment: 'testnet',
  nodeAddress: node,
  fencingToken: 'token-1',
  expiresAtMs: Date.now() + 60_000,
};
const job = { jobId: 'job-1', model: 'llama3-8b' } as unknown as JobMessage;

afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
});

describe('node gateway on fake ports', () => {
  it('refuses to deliver before start and for a node that no process holds', async () => {
    const net = new FakeNetwork();
    const a = gateway(net, 'a');
    await expect(a.run(lease, job, new AbortController().signal)).rejects.toThrow('not running');
    await a.start();
    await expect(a.run(lease, job, new AbortController().signal)).rejects.toThrow(
      `node ${node} is not connected to any gateway`,
    );
    // An ownership key naming this very process without a socket here is not a reason to relay to itself.
    net.owners.set(node, 'a');
    await expect(a.run(lease, job, new AbortController().signal)).rejects.toThrow(
      'is not connected to any gateway',
    );
    expect(net.published).toEqual([]);
    expect(a.isConnectedHere(node)).toBe(false);
  });

  it('relays to the owning process, which answers that the node is not connected there', async () => {
    const net = new FakeNetwork();
    const [a, b] = [gateway(net, 'a'), gateway(net, 'b')];
    await Promise.all([a.start(), b.start()]);
    net.owners.set(node, 'b');
    await expect(a.run(lease, job, new AbortController().signal)).rejects.toThrow(
      `node ${node} is not connected here`,
    );
    expect(net.published.map((p) => p.to)).toEqual(['b', 'a']);
    expect(JSON.parse(net.published[0]!.text)).toMatchObject({ type: 'deliver', replyTo: 'a', lease });
    expect(a.stats.relayedOut).toBe(1);
    expect(b.stats.relayedIn).toBe(0); // refused before a delivery
  });

  it('an owner nobody listens for is unreachable at once', async () => {
    const net = new FakeNetwork();
    const a = gateway(net, 'a');
    await a.start();
    net.owners.set(node, 'gone');
    await expect(a.run(lease, job, new AbortController().signal)).rejects.toThrow(
      'gateway gone is unreachable',
    );
  });

  it('a relay that outlives a pub/sub drop fails as a lost answer, not as the node being slow', async () => {
    const net = new FakeNetwork();
    const a = gateway(net, 'a');
    await a.start();
    // A listener that never answers: the owner took the message and its answer never comes back.
    net.listeners.set('silent', { onMessage: () => undefined, onDrop: () => undefined });
    net.owners.set(node, 'silent');

    const plain = new AbortController();
    const first = a.run(lease, job, plain.signal);
    await new Promise((r) => setImmediate(r));
    plain.abort();
    await expect(first).rejects.toThrow('relayed delivery of job-1 aborted');

    const dropped = new AbortController();
    const second = a.run(lease, job, dropped.signal);
    await new Promise((r) => setImmediate(r));
    net.drop('a');
    dropped.abort();
    await expect(second).rejects.toThrow('the Redis pub/sub connection dropped during the delivery');
  });

  it('stop rejects the relays still waiting, stops listening and is idempotent', async () => {
    const net = new FakeNetwork();
    const a = gateway(net, 'a');
    await a.start();
    net.listeners.set('silent', { onMessage: () => undefined, onDrop: () => undefined });
    net.owners.set(node, 'silent');
    const refused = expect(a.run(lease, job, new AbortController().signal)).rejects.toThrow(
      'node gateway stopped',
    );
    await new Promise((r) => setImmediate(r));
    await a.stop();
    await a.stop();
    await refused;
    expect(net.listeners.has('a')).toBe(false);
    await expect(a.run(lease, job, new AbortController().signal)).rejects.toThrow('not running');
  });
});
