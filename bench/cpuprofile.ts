/**
 * Summary of a V8 CPU profile (`node --cpu-prof`, e.g. from `BENCH_CPU_PROF=DIR` in bench/bridge.ts):
 * the functions with the most self time, as shares of the busy (non-idle) time.
 * `npx tsx bench/cpuprofile.ts FILE.cpuprofile [TOP] [--steady FRAMES_PER_SECOND]`.
 *
 * `--steady` keeps only the 100 ms stretches in which the process was busy between 5 % and 40 % of
 * the time: in a bridge benchmark, those in which its satellites streamed, without the idle rounds
 * of the other side and the saturated bursts of connection set-up. Given the frames a second (5000
 * for 100 satellites of 20 ms frames), it prints each function's time per frame in µs.
 *
 * The profiler samples wall-clock time: on a loaded machine a process that is preempted inside a
 * system call has those samples charged to the call, so compare shares within one run, and CPU time
 * (bench/bridge.ts prints it per frame) across runs.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";

const ProfileSchema = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number() }),
    }),
  ),
  samples: z.array(z.number()),
  timeDeltas: z.array(z.number()),
});

export interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  /** Seconds of profile summarized (all of it, or the steady stretches). */
  spanS: number;
  /** Self time per function (name, file:line), largest first. */
  top: { name: string; sharePct: number }[];
}

/** A bin's share of busy time outside which `steady` leaves it out. */
const STEADY = { binUs: 100_000, minBusy: 0.05, maxBusy: 0.4 };

export function summarize(json: string, top = 15, opts: { steady?: boolean } = {}): ProfileSummary {
  const profile = ProfileSchema.parse(JSON.parse(json));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  // Sample i lasts until the next one; samples are grouped into bins of wall-clock time.
  const bins = new Map<number, { id: number; us: number }[]>();
  let at = 0;
  profile.samples.forEach((id, i) => {
    at += profile.timeDeltas[i] ?? 0;
    const us = profile.timeDeltas[i + 1] ?? 0;
    const bin = Math.floor(at / STEADY.binUs);
    let samples = bins.get(bin);
    if (samples === undefined) bins.set(bin, (samples = []));
    samples.push({ id, us });
  });
  let idle = 0;
  let busy = 0;
  let kept = 0;
  const self = new Map<string, number>();
  const isIdle = (id: number): boolean => nodes.get(id)?.callFrame.functionName === "(idle)";
  for (const samples of bins.values()) {
    const binBusy = samples.reduce((sum, s) => sum + (isIdle(s.id) ? 0 : s.us), 0);
    const share = binBusy / STEADY.binUs;
    if (opts.steady && (share < STEADY.minBusy || share > STEADY.maxBusy)) continue;
    kept++;
    for (const { id, us } of samples) {
      if (isIdle(id)) {
        idle += us;
        continue;
      }
      busy += us;
      const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
      const file = url.slice(url.lastIndexOf("/") + 1);
      const name = `${functionName || "(anonymous)"}${file ? ` ${file}:${lineNumber + 1}` : ""}`;
      self.set(name, (self.get(name) ?? 0) + us);
    }
  }
  return {
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    spanS: opts.steady ? (kept * STEADY.binUs) / 1e6 : (busy + idle) / 1e6,
    top: [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, t]) => ({ name, sharePct: (100 * t) / busy })),
  };
}

/** The command line: `FILE [TOP] [--steady FRAMES_PER_SECOND]`, in any order. */
export function cliArgs(args: string[]): {
  file?: string;
  top: number;
  steady: boolean;
  framesPerS?: number;
} {
  const { values, positionals } = parseArgs({
    args,
    options: { steady: { type: "string" } },
    allowPositionals: true,
  });
  return {
    file: positionals[0],
    top: Number(positionals[1] ?? 15),
    steady: values.steady !== undefined,
    framesPerS: values.steady === undefined ? undefined : Number(values.steady),
  };
}

const cli = cliArgs(process.argv.slice(2));
if (cli.file !== undefined && import.meta.url.endsWith("/bench/cpuprofile.ts")) {
  const s = summarize(readFileSync(cli.file, "utf8"), cli.top, { steady: cli.steady });
  const perFrame = (ms: number): string =>
    cli.framesPerS ? ` = ${((ms * 1000) / (cli.framesPerS * s.spanS)).toFixed(2)} µs a frame` : "";
  console.log(
    `${s.spanS.toFixed(1)} s${cli.steady ? " of steady streaming" : ""}: busy ${(s.busyMs / 1000).toFixed(2)} s${perFrame(s.busyMs)}, idle ${(s.idleMs / 1000).toFixed(2)} s`,
  );
  for (const t of s.top)
    console.log(
      `${t.sharePct.toFixed(1).padStart(5)} %  ${t.name}${perFrame((t.sharePct / 100) * s.busyMs)}`,
    );
}
