/**
 * No `EventEmitter` in `src/` may emit `"error"` without a listener: Node throws an unheard `"error"`,
 * which once took the whole service down (a fatal upstream error on a warm-pool session). Every
 * `emit("error", …)` must sit in a method that checks `listenerCount("error")` first.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("EventEmitters in src/", () => {
  it('emit "error" only behind a listener check', () => {
    const unguarded: string[] = [];
    let guarded = 0;
    for (const file of sourceFiles(SRC)) {
      const lines = readFileSync(file, "utf8").split("\n");
      lines.forEach((line, i) => {
        if (!/\.emit\(\s*["']error["']/.test(line)) return;
        if (/listenerCount\(\s*["']error["']\s*\)\s*>\s*0/.test(line)) guarded++;
        else unguarded.push(`${file.slice(SRC.length)}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(unguarded).toEqual([]);
    expect(guarded).toBeGreaterThanOrEqual(2); // the session's and the conversation's #emitError
  });
});
