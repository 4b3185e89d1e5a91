/**
 * Summary of a V8 CPU profile (`node --cpu-prof`, e.g. from `BENCH_CPU_PROF=DIR` in bench/bridge.ts):
 * the functions with the most self time, as shares of the busy (non-idle) time.
 * `npx tsx bench/cpuprofile.ts FILE.cpuprofile [TOP]`.
 *
 * The profiler samples wall-clock time: on a loaded machine a process that is preempted inside a
 * system call has those samples charged to the call, so compare shares within one run, and CPU time
 * (bench/bridge.ts prints it per frame) across runs.
 */
import { readFileSync } from "node:fs";
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
  /** Self time per function (name, file:line), largest first. */
  top: { name: string; sharePct: number }[];
}

export function summarize(json: string, top = 15): ProfileSummary {
  const profile = ProfileSchema.parse(JSON.parse(json));
  const timeOf = new Map<number, number>();
  profile.samples.forEach((id, i) => timeOf.set(id, (timeOf.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  let idle = 0;
  let busy = 0;
  const self = new Map<string, number>();
  for (const node of profile.nodes) {
    const t = timeOf.get(node.id) ?? 0;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === "(idle)") {
      idle += t;
      continue;
    }
    busy += t;
    const file = url.slice(url.lastIndexOf("/") + 1);
    const name = `${functionName || "(anonymous)"}${file ? ` ${file}:${lineNumber + 1}` : ""}`;
    self.set(name, (self.get(name) ?? 0) + t);
  }
  return {
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    top: [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, t]) => ({ name, sharePct: (100 * t) / busy })),
  };
}

const file = process.argv[2];
if (file !== undefined && import.meta.url.endsWith("/bench/cpuprofile.ts")) {
  const s = summarize(readFileSync(file, "utf8"), Number(process.argv[3] ?? 15));
  console.log(`busy ${(s.busyMs / 1000).toFixed(2)} s, idle ${(s.idleMs / 1000).toFixed(2)} s`);
  for (const t of s.top) console.log(`${t.sharePct.toFixed(1).padStart(5)} %  ${t.name}`);
}
