/**
 * Client MCP benchmark: the cost of a tool call through `ClientMcpManager.callTool` (argument
 * parsing, routing, timeout guard, metrics, result text) against a direct SDK `client.callTool`.
 *
 * Both talk to server-everything over stdio (two processes of the same server, started the same
 * way) and call `echo`. Calls alternate between the two, and the order flips every iteration, so
 * machine noise falls on both alike; the pair of processes is replaced every round. Median and p99
 * over 1500 calls each.
 *
 * Runs alone: `npx tsx bench/mcp.ts` (BENCH_QUICK=1 for a smoke run).
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { Registry } from "prom-client";
import { McpServerSchema } from "../src/config/model.js";
import { createLogger } from "../src/log.js";
import { ClientMcpManager } from "../src/mcp/manager.js";
import { createTransport } from "../src/mcp/transport.js";
import { createMetrics } from "../src/metrics.js";
import { median, percentile, type BenchContext, type BenchRow } from "./types.js";

const GROUP = "mcp";
const BASELINE = "SDK client.callTool";
const TARGET_RATIO = 1.1;

const require = createRequire(import.meta.url);
const EVERYTHING = join(
  dirname(require.resolve("@modelcontextprotocol/server-everything/package.json")),
  "dist",
  "index.js",
);

/** Two connections to two processes of the same server: one through the manager, one direct. */
async function openPair(managerFirst: boolean): Promise<{
  viaManager: (i: number) => Promise<number>;
  viaSdk: (i: number) => Promise<number>;
  close: () => Promise<void>;
}> {
  const config = McpServerSchema.parse({
    name: "everything",
    mode: "client",
    transport: "stdio",
    command: process.execPath,
    args: [EVERYTHING, "stdio"],
    timeout: 30,
  });
  const logger = createLogger({ level: "error" });
  const manager = new ClientMcpManager({
    servers: [config],
    logger,
    metrics: createMetrics(new Registry(), { defaults: false }),
  });
  // The baseline's child is spawned exactly as the manager spawns its own (same environment, same
  // stderr handling), so only the layer above the SDK client differs.
  const { transport } = createTransport(config, { logger });
  const direct = new Client({ name: "bench", version: "1.0.0" }, { capabilities: {} });
  const close = async (): Promise<void> => {
    await Promise.all([manager.close(), direct.close()]);
  };
  try {
    if (managerFirst) {
      await manager.connectAll();
      await direct.connect(transport);
    } else {
      await direct.connect(transport);
      await manager.connectAll();
    }
    if (manager.status()[0]?.state !== "up") throw new Error("server-everything did not come up");
  } catch (err) {
    await close();
    throw err;
  }
  return {
    viaManager: async (i) => {
      const t0 = performance.now();
      const res = await manager.callTool("echo", `{"message":"call ${i}"}`);
      const dt = performance.now() - t0;
      if (!res.ok) throw new Error(`manager call failed: ${res.output}`);
      return dt;
    },
    viaSdk: async (i) => {
      const t0 = performance.now();
      const res = await direct.callTool({ name: "echo", arguments: { message: `call ${i}` } });
      const dt = performance.now() - t0;
      if (res.isError === true) throw new Error("direct call failed");
      return dt;
    },
    close,
  };
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  // Fresh server processes each round (spawned in alternating order), so that one process being
  // luckier with the scheduler than the other does not decide the result.
  const rounds = ctx.quick ? 2 : 10;
  const callsPerRound = ctx.quick ? 100 : 150;
  const warmup = ctx.quick ? 30 : 60;
  const ours: number[] = [];
  const base: number[] = [];

  for (let round = 0; round < rounds; round++) {
    const pair = await openPair(round % 2 === 0);
    try {
      for (let i = 0; i < warmup; i++) {
        await pair.viaManager(i);
        await pair.viaSdk(i);
      }
      for (let i = 0; i < callsPerRound; i++) {
        if (i % 2 === 0) {
          ours.push(await pair.viaManager(i));
          base.push(await pair.viaSdk(i));
        } else {
          base.push(await pair.viaSdk(i));
          ours.push(await pair.viaManager(i));
        }
      }
    } finally {
      await pair.close();
    }
  }

  const calls = ours.length;
  const medOurs = median(ours);
  const medBase = median(base);
  const p99Ours = percentile(ours, 99);
  const p99Base = percentile(base, 99);
  const ratio = medOurs / medBase;
  const note = `${rounds} rounds × ${callsPerRound} calls each, alternating; server-everything echo over stdio`;
  return [
    {
      group: GROUP,
      name: `callTool median (stdio, ${calls} calls)`,
      unit: "ms",
      ours: medOurs,
      baseline: medBase,
      baselineName: BASELINE,
      ratio,
      target: `ratio ≤ ${TARGET_RATIO.toFixed(2)} at the median`,
      met: ratio <= TARGET_RATIO,
      note,
    },
    {
      group: GROUP,
      name: `callTool p99 (stdio, ${calls} calls)`,
      unit: "ms",
      ours: p99Ours,
      baseline: p99Base,
      baselineName: BASELINE,
      ratio: p99Ours / p99Base,
      note,
    },
  ];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await run({ quick: process.env.BENCH_QUICK === "1" });
  for (const r of rows) {
    const base = r.baseline === null ? "" : ` | ${r.baseline.toFixed(3)} ${r.unit} (${r.baselineName})`;
    const ratio = r.ratio === null ? "" : ` | ×${r.ratio.toFixed(3)}`;
    const target = r.target ? ` | ${r.target} ${r.met ? "✔" : "✘"}` : "";
    console.log(`${r.name}: ${r.ours.toFixed(3)} ${r.unit}${base}${ratio}${target} | ${r.note ?? ""}`);
  }
}
