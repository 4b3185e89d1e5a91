/**
 * `npm run bench`: runs every benchmark module in one process, prints one table and writes
 * BENCHMARKS.md. Each row carries its baseline from the same run. `BENCH_QUICK=1` shrinks the work;
 * `BENCH_ONLY=mcp,audio` picks modules.
 */
import { readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import type { BenchContext, BenchModule, BenchRow } from "./types.js";

const MODULES: Record<string, () => Promise<BenchModule>> = {
  audio: () => import("./audio.js"),
  mcp: () => import("./mcp.js"),
  realtime: () => import("./realtime.js"),
  bridge: () => import("./bridge.js"),
  service: () => import("./service.js"),
  wyoming: () => import("./wyoming.js"),
  mp3: () => import("./mp3.js"),
  esphome: () => import("./esphome.js"),
};

function fmt(n: number | null): string {
  if (n === null || Number.isNaN(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1000) return n.toFixed(0);
  if (a >= 100) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

function table(rows: BenchRow[]): string {
  const head = ["group", "measure", "ours", "baseline", "ratio", "unit", "target", "note"];
  const lines = rows.map((r) => [
    r.group,
    r.name,
    fmt(r.ours),
    r.baseline === null ? "–" : `${fmt(r.baseline)} (${r.baselineName})`,
    fmt(r.ratio),
    r.unit,
    r.target ? `${r.target} ${r.met === undefined ? "" : r.met ? "✔" : "✘"}`.trim() : "",
    r.note ?? "",
  ]);
  const esc = (s: string): string => s.replace(/\|/g, "\\|");
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...lines.map((l) => `| ${l.map(esc).join(" | ")} |`),
  ].join("\n");
}

/** The closing note: every row with a target, and the service's whole-process figures. */
function headlines(rows: BenchRow[]): string {
  const picked = rows.filter((r) => r.target !== undefined || r.group === "service");
  const met = rows.filter((r) => r.met === true).length;
  const withTarget = rows.filter((r) => r.met !== undefined).length;
  return [
    "## Headline numbers",
    "",
    `${met} of ${withTarget} targets met in this run.`,
    "",
    ...picked.map((r) => {
      const base =
        r.baseline === null ? "" : ` vs ${fmt(r.baseline)} ${r.unit} ${r.baselineName} (×${fmt(r.ratio)})`;
      const target = r.target
        ? ` — target ${r.target}: ${r.met === undefined ? "n/a" : r.met ? "met" : "NOT met"}`
        : "";
      return `- ${r.group}: ${r.name}: **${fmt(r.ours)} ${r.unit}**${base}${target}`;
    }),
  ].join("\n");
}

async function main(): Promise<void> {
  const ctx: BenchContext = { quick: process.env.BENCH_QUICK === "1" };
  const only = process.env.BENCH_ONLY?.split(",").filter(Boolean);
  const names = Object.keys(MODULES).filter((n) => !only || only.includes(n));
  const rows: BenchRow[] = [];
  const failures: string[] = [];
  const started = Date.now();
  for (const name of names) {
    const t0 = Date.now();
    process.stdout.write(`bench ${name} … `);
    try {
      const mod = await MODULES[name]!();
      const got = await mod.run(ctx);
      rows.push(...got);
      process.stdout.write(`${got.length} rows in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    } catch (err) {
      failures.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
      process.stdout.write(`failed: ${String(err)}\n`);
    }
  }
  const t = table(rows);
  console.log(`\n${t}\n`);
  const heads = headlines(rows);
  console.log(heads);
  // The hand-written parts (the bridge's CPU profile; reliability suite, soak) live beside this
  // runner and are kept verbatim.
  const notes = (
    await Promise.all(
      ["./profile.md", "./reliability.md"].map((f) =>
        readFile(new URL(f, import.meta.url), "utf8").catch(() => ""),
      ),
    )
  ).join("\n");
  const md = [
    "# Benchmarks",
    "",
    "Produced by `npm run bench` (one command; it rewrites this file). Every figure is a median unless its",
    "name says otherwise, and each is paired with a baseline measured in the same run, because the machines",
    "these numbers come from are shared and noisy: read the ratios, not the absolutes.",
    "",
    `Last run: ${new Date().toISOString()} · Node ${process.version} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"} · ` +
      `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB · ${ctx.quick ? "quick mode" : "full mode"} · ` +
      `${((Date.now() - started) / 1000).toFixed(0)} s`,
    "",
    t,
    "",
    failures.length ? `Failed modules: ${failures.join("; ")}\n` : "",
    "## Reproduce",
    "",
    "```sh",
    "npm ci",
    "npm run bench                 # all modules, writes BENCHMARKS.md",
    "BENCH_ONLY=audio npm run bench # one module",
    "BENCH_QUICK=1 npm run bench    # smaller counts, for a smoke run",
    "```",
    "",
    heads,
    "",
    notes,
  ].join("\n");
  await writeFile(new URL("../BENCHMARKS.md", import.meta.url), md);
  if (failures.length) process.exitCode = 1;
}

await main();
