/**
 * bench/cpuprofile.ts: self time per function, and `steady`, which keeps only the 100 ms stretches
 * in which the process was partly busy (streaming), not idle and not saturated (set-up).
 */
import { describe, expect, it } from "vitest";
import { cliArgs, summarize } from "../bench/cpuprofile.js";

/** A profile of 10 ms samples: `bins` lists, per 100 ms, how many of its ten samples were work. */
function profile(bins: number[]): string {
  const node = (id: number, functionName: string) => ({
    id,
    callFrame: { functionName, url: "file:///x/work.js", lineNumber: 0 },
  });
  const samples = bins.flatMap((work) => [
    ...Array<number>(work).fill(3),
    ...Array<number>(10 - work).fill(2),
  ]);
  return JSON.stringify({
    nodes: [node(1, "(root)"), node(2, "(idle)"), node(3, "work")],
    samples,
    timeDeltas: samples.map((_, i) => (i === 0 ? 5_000 : 10_000)),
  });
}

describe("cpuprofile summary", () => {
  it("charges each sample's time to its function, idle apart", () => {
    const s = summarize(profile([0, 2, 10, 0]));
    expect(s.busyMs).toBe(120);
    // A sample lasts until the next: the last one, with none after it, counts for nothing.
    expect(s.idleMs).toBe(270);
    expect(s.top).toEqual([{ name: "work work.js:1", sharePct: 100 }]);
  });

  it("steady keeps the partly busy stretches only", () => {
    const s = summarize(profile([0, 2, 10, 3, 1]), 15, { steady: true });
    // Idle (0 %) and saturated (100 %) stretches go; 20 %, 30 % and 10 % stay: three of five.
    expect(s.spanS).toBeCloseTo(0.3);
    expect(s.busyMs).toBe(60);
  });

  it("reads TOP and --steady FRAMES_PER_SECOND from the command line, in any order", () => {
    expect(cliArgs(["p.cpuprofile", "5"])).toEqual({ file: "p.cpuprofile", top: 5, steady: false });
    expect(cliArgs(["p.cpuprofile", "--steady", "5000", "8"])).toEqual({
      file: "p.cpuprofile",
      top: 8,
      steady: true,
      framesPerS: 5000,
    });
    expect(cliArgs(["--steady", "5000", "p.cpuprofile"])).toMatchObject({ file: "p.cpuprofile", top: 15 });
  });
});
