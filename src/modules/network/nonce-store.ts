// The Redis nonce store of signed node messages: SET NX PX on one key per (node, nonce), so a replayed
// message is refused by every process for the skew window.
import type { Redis } from '../../stores/redis/client.js';
import { RedisKeys } from '../../stores/redis/keys.js';
import type { NonceStore } from './node-message.js';

export class RedisNonceStore implements NonceStore {
  private readonly keys: RedisKeys;

  /** `prefix` is REDIS_KEY_PREFIX. */
  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.keys = new RedisKeys(prefix);
  }

  async claim(node: string, nonce: string, ttlMs: number): Promise<boolean> {
    const set = await this.redis.set(this.keys.nodeNonce(node, nonce), '1', 'PX', Math.max(1, ttlMs), 'NX');
    return set === 'OK';
  }
}

/**
 * Nonces of one node session, in process memory: the job messages of a session are checked here, with no
 * Redis round trip. Two generations rotated every `ttlMs`, so a nonce is remembered for ttlMs..2×ttlMs and
 * memory is bounded by what the session sends in two windows. Safe only where a replay elsewhere (another
 * session or process) is refused by other means: the gateway accepts a job message only on the session of
 * its signer, for a delivery pending there with the lease's fencing token (unique per lease), once.
 */
export class SessionNonceWindow implements NonceStore {
  private current = new Set<string>();
  private previous = new Set<string>();
  private rotatedAtMs: number;

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.rotatedAtMs = now();
  }

  claim(node: string, nonce: string): Promise<boolean> {
    const t = this.now();
    if (t - this.rotatedAtMs >= this.ttlMs) {
      // Two windows without traffic: both generations are older than the TTL.
      this.previous = t - this.rotatedAtMs >= 2 * this.ttlMs ? new Set() : this.current;
      this.current = new Set();
      this.rotatedAtMs = t;
    }
    const k = `${node}:${nonce}`;
    if (this.current.has(k) || this.previous.has(k)) return Promise.resolve(false);
    this.current.add(k);
    return Promise.resolve(true);
  }

  get size(): number {
    return this.current.size + this.previous.size;
  }
}
