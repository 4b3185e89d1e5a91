/**
 * The Node options every process a benchmark measures runs with, baselines included: those of the
 * add-on's image (`ENV NODE_OPTIONS` in the Dockerfile), so the figures are the image's, or
 * `BENCH_NODE_OPTIONS` when set (`""` for Node's defaults).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { REPO_ROOT } from "../test/reliability/harness.js";

export interface NodeOptions {
  /** The value for `NODE_OPTIONS`. */
  value: string;
  /** How a row's name says what the processes ran with. */
  label: string;
}

export async function benchNodeOptions(): Promise<NodeOptions> {
  const override = process.env.BENCH_NODE_OPTIONS;
  const value = override ?? (await imageNodeOptions());
  const label =
    value === ""
      ? "no Node options"
      : `NODE_OPTIONS="${value}"${override === undefined ? " as in the image" : ""}`;
  return { value, label };
}

/** The `ENV NODE_OPTIONS="…"` line of the Dockerfile (test/manifest.test.ts keeps it to one). */
async function imageNodeOptions(): Promise<string> {
  const dockerfile = await readFile(join(REPO_ROOT, "Dockerfile"), "utf8");
  return /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(dockerfile)?.[1] ?? "";
}
