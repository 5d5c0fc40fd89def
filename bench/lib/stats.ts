/** Latency summaries: nearest-rank percentiles over a sorted copy. */

export interface LatencySummary {
  count: number;
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of an ascending array (p in (0, 100]). */
export function nearestRank(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(values: ArrayLike<number>): LatencySummary | null {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i]!;
  const r = (v: number) => Math.round(v * 10) / 10;
  return {
    count: sorted.length,
    min: r(sorted[0]!),
    p50: r(nearestRank(sorted, 50)),
    p95: r(nearestRank(sorted, 95)),
    p99: r(nearestRank(sorted, 99)),
    max: r(sorted[sorted.length - 1]!),
    mean: r(sum / sorted.length),
  };
}

export function fmtMs(v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '–';
  return v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}

export function fmtSummary(s: LatencySummary | null): string {
  return s ? `p50 ${fmtMs(s.p50)} · p95 ${fmtMs(s.p95)} · p99 ${fmtMs(s.p99)} · max ${fmtMs(s.max)} (n=${s.count})` : 'no samples';
}
