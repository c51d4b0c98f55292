// Lease releases batched where they arrive together: while one batch is on its way to Redis, new releases
// queue and go next in one pipeline (one round trip; each lease still its own atomic live_release script
// with its own reply). With none in flight a release goes at once, so an idle system waits for no timer.
import type { Redis } from '../../stores/redis/client.js';
import { getScript, runScript, type LuaReply } from '../../stores/redis/scripts.js';

export type ReleaseReply =
  | { kind: 'ok'; penalty: number }
  | { kind: 'no_lease' }
  | { kind: 'stale'; currentToken: string };

/** Releases sent in one pipeline at most. */
const MAX_BATCH = 256;

interface Pending {
  keys: string[];
  args: Array<string | number>;
  resolve(r: ReleaseReply): void;
  reject(e: Error): void;
}

function replyOf(reply: LuaReply): ReleaseReply {
  const r = Array.isArray(reply) ? reply : [];
  if (r[0] === 'OK') return { kind: 'ok', penalty: Number(r[1]) };
  if (r[0] === 'STALE') return { kind: 'stale', currentToken: r[1] == null ? '' : String(r[1]) };
  return { kind: 'no_lease' };
}

export class ReleaseBatcher {
  private readonly queue: Pending[] = [];
  private inFlight = false;
  /** Round trips made (one per batch). */
  batches = 0;

  constructor(private readonly redis: Redis) {}

  release(keys: string[], args: Array<string | number>): Promise<ReleaseReply> {
    return new Promise<ReleaseReply>((resolve, reject) => {
      this.queue.push({ keys, args, resolve, reject });
      this.flush();
    });
  }

  private flush(): void {
    if (this.inFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, MAX_BATCH);
    this.inFlight = true;
    void this.send(batch).finally(() => {
      this.inFlight = false;
      this.flush();
    });
  }

  private async send(batch: Pending[]): Promise<void> {
    const script = getScript('live_release');
    this.batches += 1;
    const one = async (r: Pending) => {
      try {
        r.resolve(replyOf(await runScript(this.redis, script, r.keys, r.args)));
      } catch (err) {
        r.reject(err instanceof Error ? err : new Error(String(err)));
      }
    };
    if (batch.length === 1) return one(batch[0]!);
    const pipe = this.redis.pipeline();
    for (const r of batch) pipe.evalsha(script.sha, r.keys.length, ...r.keys, ...r.args);
    const replies = await pipe.exec().catch(() => null);
    await Promise.all(
      batch.map(async (r, i) => {
        const [err, reply] = replies?.[i] ?? [new Error('pipeline failed'), null];
        // NOSCRIPT (a restarted Redis) or a failed pipeline: that release alone goes again through runScript.
        if (err) return one(r);
        r.resolve(replyOf(reply as LuaReply));
      }),
    );
  }
}
