/** One line of the bench table. `baseline` is the same measurement without the thing under test, same run. */
export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  baseline?: number;
  /** value / baseline */
  ratio?: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function withRatio(row: Omit<BenchRow, 'ratio'>): BenchRow {
  return row.baseline ? { ...row, ratio: row.value / row.baseline } : row;
}
