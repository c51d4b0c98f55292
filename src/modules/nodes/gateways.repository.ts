// Which backbone process holds each node's WebSocket, and the relay channels between those processes (Redis).
// A lease may name a node connected to another process: its owner (`gw:node:<address>`, refreshed while the
// socket is open, expiring after a crash) gets the delivery on its pub/sub channel and answers on the
// requester's. Pub/sub is not durable: a message published while nobody listens is gone.
import type { Redis } from '../../stores/redis/client.js';
import { RedisKeys } from '../../stores/redis/keys.js';
import { getScript, runScript } from '../../stores/redis/scripts.js';

/** How long a node's ownership key lives without a refresh (a crashed process's nodes free up after it). */
export const GATEWAY_OWNER_TTL_MS = 30_000;

/** What the node gateway needs of the stores: node ownership and the relay between processes. */
export interface GatewayDirectory {
  /** This process now holds the node's socket (the newest connection wins). */
  claim(node: string): Promise<void>;
  /** Gives the node up, only if this process still holds it. */
  release(node: string): Promise<void>;
  /** Re-asserts every claim of this process (before they expire, or after Redis lost them). */
  refresh(nodes: readonly string[]): Promise<void>;
  /** The process holding the node's socket, if any. */
  ownerOf(node: string): Promise<string | null>;
  /** Sends a relay message to a process; resolves with how many listeners got it (0: nobody). */
  publish(instance: string, text: string): Promise<number>;
  /** Sends a cancel to every process (the one holding the job's delivery acts on it). */
  broadcastCancel(text: string): Promise<number>;
  /**
   * Listens on this process's relay channel and on the cancel channel every process shares; `onDrop` is
   * called each time the connection behind them drops (whatever was published meanwhile is lost). Resolves
   * with a function that stops listening.
   */
  listen(
    on: { message: (text: string) => void; cancel: (text: string) => void },
    onDrop: () => void,
  ): Promise<() => Promise<void>>;
}

/** The GatewayDirectory on Redis: ownership keys with a TTL, one pub/sub channel per process. */
export class RedisGatewayDirectory implements GatewayDirectory {
  private readonly keys: RedisKeys;

  constructor(
    private readonly deps: {
      redis: Redis;
      /** Subscriber-mode connection (shared: only messages on this process's channel are handled). */
      subscriber: Redis;
      prefix: string;
      instanceId: string;
    },
  ) {
    this.keys = new RedisKeys(deps.prefix);
  }

  async claim(node: string): Promise<void> {
    await this.deps.redis.set(this.keys.nodeGateway(node), this.deps.instanceId, 'PX', GATEWAY_OWNER_TTL_MS);
  }

  async release(node: string): Promise<void> {
    await runScript(
      this.deps.redis,
      getScript('gw_release'),
      [this.keys.nodeGateway(node)],
      [this.deps.instanceId],
    );
  }

  async refresh(nodes: readonly string[]): Promise<void> {
    if (nodes.length === 0) return;
    const pipe = this.deps.redis.pipeline();
    for (const n of nodes)
      pipe.set(this.keys.nodeGateway(n), this.deps.instanceId, 'PX', GATEWAY_OWNER_TTL_MS);
    await pipe.exec();
  }

  ownerOf(node: string): Promise<string | null> {
    return this.deps.redis.get(this.keys.nodeGateway(node));
  }

  publish(instance: string, text: string): Promise<number> {
    return this.deps.redis.publish(this.keys.gatewayChannel(instance), text);
  }

  broadcastCancel(text: string): Promise<number> {
    return this.deps.redis.publish(this.keys.gatewayCancelChannel(), text);
  }

  async listen(
    on: { message: (text: string) => void; cancel: (text: string) => void },
    onDrop: () => void,
  ): Promise<() => Promise<void>> {
    const sub = this.deps.subscriber;
    const channel = this.keys.gatewayChannel(this.deps.instanceId);
    const cancels = this.keys.gatewayCancelChannel();
    const handler = (ch: string, text: string): void => {
      if (ch === channel) on.message(text);
      else if (ch === cancels) on.cancel(text);
    };
    sub.on('message', handler);
    sub.on('close', onDrop);
    await sub.subscribe(channel, cancels);
    return async () => {
      sub.off('message', handler);
      sub.off('close', onDrop);
      await sub.unsubscribe(channel, cancels).catch(() => undefined);
    };
  }
}
