/**
 * Debian tools some tests run. `.ci/run` installs them, so CI runs every such test; on a machine
 * without one, the tests that need it are skipped and the run's output says which and why (on
 * stderr, and as the skip note), instead of failing.
 */
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import type { TestContext } from "vitest";

/** Each tool and the Debian package that has it. */
const PACKAGE = {
  promtool: "prometheus",
  prometheus: "prometheus",
  shellcheck: "shellcheck",
  apparmor_parser: "apparmor",
} as const;

export type Tool = keyof typeof PACKAGE;

/** Absolute path of the executable `name` in a folder of `PATH`, or undefined. */
export function findTool(name: string, path = process.env.PATH ?? ""): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

/** Why a test that needs `tool` cannot run here, or undefined when it is on PATH. */
export function missingTool(tool: Tool, path = process.env.PATH ?? ""): string | undefined {
  if (findTool(tool, path) !== undefined) return undefined;
  return `${tool} is not on PATH (Debian package ${PACKAGE[tool]}; .ci/run installs it)`;
}

/**
 * For `it.skipIf` / `describe.skipIf`: true when `tool` is missing, and then says on stderr that
 * `what` is skipped and why.
 */
export function lacks(tool: Tool, what: string): boolean {
  const why = missingTool(tool);
  if (why !== undefined) console.warn(`skipped: ${what}: ${why}`);
  return why !== undefined;
}

/** Inside a test: skips the rest of it when `tool` is missing, saying why (stderr and skip note). */
export function skipWithout(ctx: TestContext, tool: Tool, what: string): void {
  const why = missingTool(tool);
  if (why === undefined) return;
  console.warn(`skipped: ${what}: ${why}`);
  ctx.skip(`${what}: ${why}`);
}
