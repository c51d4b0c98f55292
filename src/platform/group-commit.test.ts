// Unit tests of the group committer (no I/O): per-item outcomes, bounded concurrency, draining stop.
import { describe, expect, it } from 'vitest';
import { GroupCommitter } from './group-commit.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('GroupCommitter', () => {
  it('gives every item its own outcome and never exceeds the concurrency bound', async () => {
    let running = 0;
    let maxRunning = 0;
    const sizes: number[] = [];
    const gc = new GroupCommitter<number, number>(
      { maxWaitMs: 1, maxSize: 10, concurrency: 3 },
      async (items) => {
        running += 1;
        maxRunning = Math.max(maxRunning, running);
        sizes.push(items.length);
        await sleep(5);
        running -= 1;
        return items.map((i) =>
          i % 7 === 0
            ? { ok: false as const, error: new Error(`bad ${i}`) }
            : { ok: true as const, value: i * 2 },
        );
      },
    );
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => gc.submit(i)));
    results.forEach((r, i) => {
      if (i % 7 === 0) expect(r).toMatchObject({ status: 'rejected', reason: { message: `bad ${i}` } });
      else expect(r).toEqual({ status: 'fulfilled', value: i * 2 });
    });
    expect(maxRunning).toBeLessThanOrEqual(3);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(10);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(200);
    expect(sizes.length).toBeLessThan(200); // items did share flushes
  });

  it('fails only its own batch when a flush throws, and stop() drains then refuses', async () => {
    let calls = 0;
    const gc = new GroupCommitter<string, string>(
      { maxWaitMs: 50, maxSize: 2, concurrency: 1 },
      async (items) => {
        calls += 1;
        if (calls === 1) throw new Error('flush failed');
        return items.map((v) => ({ ok: true as const, value: v.toUpperCase() }));
      },
    );
    const [a, b, c] = [gc.submit('a'), gc.submit('b'), gc.submit('c')];
    await expect(a).rejects.toThrow('flush failed');
    await expect(b).rejects.toThrow('flush failed');
    const stopping = gc.stop();
    await expect(c).resolves.toBe('C');
    await stopping;
    await expect(gc.submit('d')).rejects.toThrow(/stopped/);
  });
});

describe('GroupCommitter with flushWhenIdle', () => {
  it('flushes a lone item at once and batches the items that arrive while a flush runs', async () => {
    const sizes: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gc = new GroupCommitter<number, number>(
      { maxWaitMs: 10_000, maxSize: 100, concurrency: 1, flushWhenIdle: true },
      async (items) => {
        sizes.push(items.length);
        if (sizes.length === 1) await gate;
        return items.map((i) => ({ ok: true as const, value: i }));
      },
    );
    const first = gc.submit(0);
    // No timer: the first flush started synchronously although maxWaitMs is 10 s.
    expect(sizes).toEqual([1]);
    const rest = Array.from({ length: 20 }, (_, i) => gc.submit(i + 1));
    expect(sizes).toEqual([1]);
    release();
    expect(await first).toBe(0);
    expect(await Promise.all(rest)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(sizes).toEqual([1, 20]);
  });
});
