// Rollup rules (pure): which statuses are final, the latency buckets, UTC day arithmetic and month-aligned chunks.

export const FINISHED_STATUSES = ['succeeded', 'failed', 'expired', 'cancelled'] as const;

/** Upper bounds (ms, inclusive) of the latency histogram; one more open-ended bucket follows the last. */
export const LATENCY_BUCKETS_MS = [100, 250, 500, 1000, 2500, 5000, 10000, 30000] as const;

const DAY_MS = 86_400_000;

/** 'YYYY-MM-DD' of a UTC instant. */
export function dayOf(t: Date): string {
  return t.toISOString().slice(0, 10);
}

export function dayStart(day: string): Date {
  const d = new Date(`${day}T00:00:00.000Z`);
  if (Number.isNaN(d.getTime()) || dayOf(d) !== day) throw new RangeError(`not a day: ${day}`);
  return d;
}

export function addDays(day: string, n: number): string {
  return dayOf(new Date(dayStart(day).getTime() + n * DAY_MS));
}

/** Days that may be rolled up at `now`: every day that ended at least `detailWindowDays` ago ends before this. */
export function cutoffDay(now: Date, detailWindowDays: number): string {
  return dayOf(new Date(now.getTime() - detailWindowDays * DAY_MS));
}

/** Splits [from, to) into runs of days inside one calendar month, at most `maxDays` each (one scan of one partition). */
export function monthChunks(from: string, to: string, maxDays: number): Array<{ from: string; to: string }> {
  const out: Array<{ from: string; to: string }> = [];
  let start = from;
  while (start < to) {
    let end = start;
    let n = 0;
    do {
      end = addDays(end, 1);
      n += 1;
    } while (end < to && end.slice(0, 7) === start.slice(0, 7) && n < maxDays);
    out.push({ from: start, to: end });
    start = end;
  }
  return out;
}

/** SQL array of per-bucket counts over `latency_ms` (each bucket counts (previous bound, bound]). */
export function latencyBucketsSql(): string {
  const parts: string[] = [];
  let prev: number | undefined;
  for (const b of LATENCY_BUCKETS_MS) {
    parts.push(
      prev === undefined
        ? `count(*) filter (where latency_ms <= ${b})`
        : `count(*) filter (where latency_ms > ${prev} and latency_ms <= ${b})`,
    );
    prev = b;
  }
  parts.push(`count(*) filter (where latency_ms > ${prev})`);
  return `array[${parts.join(', ')}]::int8[]`;
}
