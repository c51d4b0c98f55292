// Small helpers shared by benchmarks: percentiles, rates and the BENCH line.
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(latenciesMs: number[]): { p50: number; p99: number; max: number } {
  const s = [...latenciesMs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
}

export const round = (n: number, digits = 2): number => Number(n.toFixed(digits));

export function benchLine(suite: string, fields: Record<string, number | string>): string {
  return `BENCH ${suite} ${Object.entries(fields)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}`;
}
