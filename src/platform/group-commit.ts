// Group commit: collects items for a short bounded wait (or until a batch is full) and hands them to one
// flush; each item keeps its own promise and outcome. At most `concurrency` flushes run at once.
// With `flushWhenIdle`, there is no timer: an item flushes at once when no flush is running, and items that
// arrive while one runs form the next batch (so batches grow with load and an idle system never waits).

export interface GroupCommitOptions {
  maxWaitMs: number;
  maxSize: number;
  concurrency: number;
  /** Flush at once when no flush is in flight; otherwise when one ends or a batch is full (maxWaitMs unused). */
  flushWhenIdle?: boolean;
}

/** Per-item outcome of a flush: a value or that item's own error. */
export type Outcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

interface Pending<T, R> {
  item: T;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

export class GroupCommitter<T, R> {
  private queue: Array<Pending<T, R>> = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly opts: GroupCommitOptions,
    /** Must return one outcome per item, in order; a throw fails every item of the batch. */
    private readonly flush: (items: T[]) => Promise<Array<Outcome<R>>>,
  ) {}

  submit(item: T): Promise<R> {
    if (this.closed) return Promise.reject(new Error('group committer is stopped'));
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.opts.flushWhenIdle) {
        if (this.inFlight === 0 || this.queue.length >= this.opts.maxSize) this.kick();
      } else if (this.queue.length >= this.opts.maxSize || this.opts.maxWaitMs === 0) this.kick();
      else this.timer ??= setTimeout(() => this.onTimer(), this.opts.maxWaitMs);
    });
  }

  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  /** Refuses new items and resolves once queued and in-flight batches are done. */
  async stop(): Promise<void> {
    this.closed = true;
    this.kick();
    if (this.queue.length === 0 && this.inFlight === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private onTimer(): void {
    this.timer = undefined;
    this.kick();
  }

  private kick(): void {
    while (this.inFlight < this.opts.concurrency && this.queue.length > 0) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      // Everything queued goes into one batch (up to maxSize): splitting it over free slots was measured to
      // help spread load a little and to hurt one hot namespace a lot (its batches serialize on the row lock).
      const batch = this.queue.splice(0, this.opts.maxSize);
      this.inFlight += 1;
      void this.run(batch);
    }
  }

  private async run(batch: Array<Pending<T, R>>): Promise<void> {
    try {
      const outcomes = await this.flush(batch.map((p) => p.item));
      batch.forEach((p, i) => {
        const o = outcomes[i];
        if (!o) p.reject(new Error('group commit returned no outcome for an item'));
        else if (o.ok) p.resolve(o.value);
        else p.reject(o.error);
      });
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      this.inFlight -= 1;
      // Items that queued while every slot was busy have waited long enough: flush them now.
      if (this.queue.length > 0) this.kick();
      if (this.queue.length === 0 && this.inFlight === 0) {
        for (const w of this.idleWaiters.splice(0)) w();
      }
    }
  }
}
