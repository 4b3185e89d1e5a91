/**
 * The build's eager module wrappers (scripts/eager-wrappers.ts): each esbuild wrapper method becomes a
 * parenthesised function expression that V8 compiles with its chunk (and so keeps in the compile
 * cache), and the wrapped code runs exactly as before.
 */
import { readdirSync, readFileSync } from "node:fs";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { eagerWrappers } from "../scripts/eager-wrappers.js";

const DIST = new URL("../dist/", import.meta.url);

/** esbuild's two wrapper helpers as they behave (calls the single method once, on first use). */
const HELPERS = `
var __getOwnPropNames = Object.getOwnPropertyNames;
var __commonJS = (cb, mod) => function __require() {
  return mod || (0, cb[__getOwnPropNames(cb)[0]])((mod = { exports: {} }).exports, mod), mod.exports;
};
var __esm = (fn, res) => function __init() {
  return fn && (res = (0, fn[__getOwnPropNames(fn)[0]])(fn = 0)), res;
};
`;

describe("eager module wrappers", () => {
  const chunk = `
var require_a = __commonJS({"node_modules/a/index.js"(exports, module) {
  const inner = { m() { return "{not a wrapper}"; } };
  module.exports = { answer: 42, text: "}})" + inner.m(), self: typeof this };
}});
var init_b = __esm({"src/b.ts"() { out.b = \`b\${1 + 1}\`; }});
var untouched = { "c"(x) { return x; } };
`;

  it("rewrites every wrapper method, and only those", () => {
    const { text, count } = eagerWrappers(chunk);
    expect(count).toBe(2);
    expect(text).toContain(`__commonJS({"node_modules/a/index.js":(function(exports, module) {`);
    expect(text).toContain(`__esm({"src/b.ts":(function() { out.b = \`b\${1 + 1}\`; })})`);
    // A method that is not a wrapper's, inside or outside one, stays a method.
    expect(text).toContain(`const inner = { m() {`);
    expect(text).toContain(`var untouched = { "c"(x) { return x; } };`);
  });

  it("runs the wrapped code as before", () => {
    const run = (code: string): unknown =>
      runInNewContext(`${HELPERS}\nvar out = {};\n${code}\n({ a: require_a(), b: (init_b(), out.b) })`);
    const before = run(chunk);
    expect(before).toEqual({ a: { answer: 42, text: "}}){not a wrapper}", self: "object" }, b: "b2" });
    expect(run(eagerWrappers(chunk).text)).toEqual(before);
  });

  it("left no wrapper method in the built chunks", () => {
    const chunks = readdirSync(DIST).filter((f) => f.endsWith(".js"));
    let rewritten = 0;
    for (const name of chunks) {
      const text = readFileSync(new URL(name, DIST), "utf8");
      expect(text, name).not.toMatch(/__(?:commonJS|esm)\(\{"[^"]+"\(/);
      rewritten += text.match(/__(?:commonJS|esm)\(\{"[^"]+":\(function\(/g)?.length ?? 0;
    }
    // fastify, ws, pino, prom-client, yaml and the rest: well over a hundred CommonJS modules.
    expect(rewritten).toBeGreaterThan(100);
  });
});
