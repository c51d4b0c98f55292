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
