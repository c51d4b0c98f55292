// Per-address budget of unauthenticated WebSockets on one gateway process: how many may be in their hello at
// once, and how many may end without a valid hello per window. In memory, per process (a deployment of N
// gateway processes admits up to N× the figures); a refused upgrade gets 429 before any WebSocket exists.

export interface HelloBudgetOptions {
  /** Sockets of one address still in their hello at the same time. */
  maxPending: number;
  /** Sockets of one address that closed without a valid hello, per window; past it, upgrades are refused. */
  maxFailures: number;
  windowMs: number;
}

interface Failures {
  count: number;
  windowStartMs: number;
}

/** At most this many addresses are tracked; the oldest failure windows go first (memory stays bounded). */
const MAX_TRACKED = 100_000;

export class HelloBudget {
  private readonly pending = new Map<string, number>();
  private readonly failures = new Map<string, Failures>();

  constructor(private readonly opts: HelloBudgetOptions) {}

  /** Whether a new socket from `address` may start a hello; when not, how long until it may (ms). */
  admit(
    address: string,
    nowMs = Date.now(),
  ): { ok: true } | { ok: false; retryAfterMs: number; why: string } {
    const f = this.failures.get(address);
    if (f && nowMs - f.windowStartMs >= this.opts.windowMs) this.failures.delete(address);
    else if (f && f.count >= this.opts.maxFailures)
      return {
        ok: false,
        retryAfterMs: f.windowStartMs + this.opts.windowMs - nowMs,
        why: `${f.count} WebSockets from this address closed without a valid node.hello in the last ${this.opts.windowMs} ms`,
      };
    if ((this.pending.get(address) ?? 0) >= this.opts.maxPending)
      return {
        ok: false,
        // Spread the retries of a mass reconnect (every node behind one address at once) over 1–3 s.
        retryAfterMs: 1_000 + Math.floor(Math.random() * 2_000),
        why: `${this.opts.maxPending} WebSockets from this address are already waiting for their node.hello`,
      };
    this.pending.set(address, (this.pending.get(address) ?? 0) + 1);
    return { ok: true };
  }

  /** The socket admitted for `address` ended its hello; `failed`: by the client's fault (counted). */
  settled(address: string, failed: boolean, nowMs = Date.now()): void {
    const n = (this.pending.get(address) ?? 1) - 1;
    if (n <= 0) this.pending.delete(address);
    else this.pending.set(address, n);
    if (!failed) return;
    let f = this.failures.get(address);
    if (!f || nowMs - f.windowStartMs >= this.opts.windowMs) {
      f = { count: 0, windowStartMs: nowMs };
      this.failures.delete(address);
      if (this.failures.size >= MAX_TRACKED) this.failures.delete(this.failures.keys().next().value!);
      this.failures.set(address, f);
    }
    f.count += 1;
  }
}
