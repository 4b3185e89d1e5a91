/**
 * Every benchmark module exports `run(ctx)` returning rows; `bench/run.ts` prints them as one table
 * and writes BENCHMARKS.md. Each row compares ours against a baseline measured in the same run.
 */
export interface BenchRow {
  /** Section, e.g. "mcp", "audio", "realtime", "bridge". */
  group: string;
  /** What was measured, e.g. "callTool median (stdio, 1000 calls)". */
  name: string;
  unit: string;
  /** Our figure (median unless the name says otherwise). */
  ours: number;
  /** The baseline's figure, same unit, same run; null when there is none (e.g. a pure absolute). */
  baseline: number | null;
  baselineName: string;
  /** ours / baseline (for speeds where higher is better, say so in `note`). */
  ratio: number | null;
  /** Target text from the issue, and whether it was met. */
  target?: string;
  met?: boolean;
  note?: string;
}

export interface BenchContext {
  /** Shrinks iteration counts for a quick smoke run (BENCH_QUICK=1). */
  quick: boolean;
}

export type BenchModule = { run(ctx: BenchContext): Promise<BenchRow[]> };

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[idx]!;
}

/** `parts` played back to back, over and over, up to `length` samples. */
export function loopSamples(parts: readonly Int16Array[], length: number): Int16Array {
  const out = new Int16Array(length);
  for (let at = 0, i = 0; at < out.length && parts.length > 0; i++) {
    const part = parts[i % parts.length]!;
    const n = Math.min(part.length, out.length - at);
    out.set(part.subarray(0, n), at);
    at += n;
  }
  return out;
}
