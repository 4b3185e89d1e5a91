/**
 * Realtime engine benchmark: time from "conversation wanted" (`engine.start()` called) to "ready to
 * stream audio" (it resolved: the upstream session is connected, configured and its native tools are
 * listed), taking a warm session from the pool versus a cold connect, in the same run, against the
 * fake Realtime server on loopback with a realistic 300 ms session setup (and, in the second case,
 * a native MCP server whose tools take 200 ms to list).
 *
 * Runs alone: `npx tsx bench/realtime.ts` (BENCH_QUICK=1 for a smoke run).
 */
import { pathToFileURL } from "node:url";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { startFakeRealtime, type FakeRealtimeOptions } from "../test/fake-realtime/server.js";
import {
  RecordingTools,
  freshMetrics,
  makeConfig,
  silentLogger,
  tool,
  until,
} from "../test/fake-realtime/helpers.js";
import { median, percentile, type BenchContext, type BenchRow } from "./types.js";

const GROUP = "realtime";
const SETUP_MS = 300;

interface Case {
  label: string;
  fake: FakeRealtimeOptions;
  native: boolean;
}

const CASES: readonly Case[] = [
  { label: `${SETUP_MS} ms setup`, fake: { sessionSetupDelayMs: SETUP_MS }, native: false },
  {
    label: `${SETUP_MS} ms setup + native tools listed in 200 ms`,
    fake: { sessionSetupDelayMs: SETUP_MS, mcp: { ha: { outcome: "completed", delayMs: 200 } } },
    native: true,
  },
];

async function measure(c: Case, poolSize: number, iterations: number): Promise<number[]> {
  const fake = await startFakeRealtime(c.fake);
  const config = makeConfig(
    fake.url,
    c.native ? { mcp_servers: [{ name: "ha", mode: "native", server_url: "https://ha.example/mcp" }] } : {},
    { pool_size: poolSize },
  );
  const engine = new RealtimeEngine({
    config,
    tools: new RecordingTools([tool("everything", "echo")]),
    approvals: new ApprovalQueue({ timeoutS: 30 }),
    logger: silentLogger(),
    metrics: freshMetrics(),
  });
  const times: number[] = [];
  try {
    await engine.warmUp();
    for (let i = 0; i < iterations; i++) {
      if (poolSize > 0) await until(() => engine.status().pool.ready >= poolSize, 10_000, "warm pool");
      const t0 = performance.now();
      const conv = await engine.start({ turn: "server_vad" });
      times.push(performance.now() - t0);
      await conv.end("bench");
    }
  } finally {
    await engine.close();
    await fake.close();
  }
  return times;
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const iterations = ctx.quick ? 5 : 25;
  const rows: BenchRow[] = [];
  for (const c of CASES) {
    const cold = await measure(c, 0, iterations);
    const warm = await measure(c, 1, iterations);
    const w = median(warm);
    const k = median(cold);
    rows.push({
      group: GROUP,
      name: `conversation wanted → ready to stream audio (${c.label}, ${iterations} starts)`,
      unit: "ms",
      ours: w,
      baseline: k,
      baselineName: "cold connect",
      ratio: w / k,
      target: "warm pool ≪ cold connect",
      met: w < k / 10,
      note: `lower is better; p90 warm ${percentile(warm, 90).toFixed(2)} ms, cold ${percentile(cold, 90).toFixed(0)} ms`,
    });
  }
  return rows;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await run({ quick: process.env.BENCH_QUICK === "1" });
  for (const r of rows)
    console.log(
      `${r.name}: ${r.ours.toFixed(2)} ${r.unit} | ${r.baseline?.toFixed(1)} (${r.baselineName}) | ×${r.ratio?.toFixed(4)} | ${r.note}`,
    );
}
