/**
 * `npm run build` (after `tsc --noEmit` checked the types): the service as a few ES modules in dist/,
 * bundled by esbuild with its dependencies, so starting it reads a handful of files instead of
 * hundreds (start-up to `/healthz` is measured by bench/service.ts).
 *
 * - dist/main.js: the entry (src/main.ts): it turns on the compile cache, then imports the rest,
 *   which esbuild puts in chunks beside it; code loaded on first use (the MCP client) stays a chunk
 *   of its own that start-up never reads.
 * - dist/ui/: the ingress page's files (src/http/ui), found by `./ui/` relative to the module.
 * - package.json is read at run time from `../package.json` relative to dist/, as from src/.
 *
 * Every chunk sits directly in dist/: `import.meta.url` gives the same folder in all of them.
 */
import { build, type Plugin } from "esbuild";
import { chmod, cp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { eagerWrappers } from "./scripts/eager-wrappers.js";

const root = new URL("./", import.meta.url);

/**
 * Node's built-in modules, as our own source imports them (`import { createServer } from
 * "node:http"`), loaded with `require` as the bundled dependencies load them. An ES import of a
 * built-in builds its ES module facade, which reads every export, and some exports load more on
 * first read: `node:http`'s `WebSocket`, `CloseEvent` and `MessageEvent` load undici (~10 ms of
 * start-up for nothing).
 */
const builtinsByRequire: Plugin = {
  name: "builtins-by-require",
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) =>
      args.namespace === "builtin"
        ? { path: args.path, external: true }
        : { path: args.path, namespace: "builtin" },
    );
    b.onLoad({ filter: /.*/, namespace: "builtin" }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: "js",
    }));
  },
};
const dist = new URL("dist/", root);

await rm(dist, { recursive: true, force: true });
await build({
  absWorkingDir: fileURLToPath(root),
  entryPoints: ["src/main.ts"],
  outdir: "dist",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node24",
  chunkNames: "[name]-[hash]",
  legalComments: "none",
  // Less source for V8 to hold and to parse on a first start; names stay for stack traces and logs.
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  logLevel: "warning",
  plugins: [builtinsByRequire],
  // `ws` masks and unmasks frames with `bufferutil` when it loads (before Node 26.12's
  // `http.websocketMask`); ours is WebAssembly, bundled, so no native build and no module looked up
  // at run time (src/net/ws-mask.ts).
  alias: { bufferutil: "./src/net/ws-mask.ts" },
  // CommonJS dependencies call `require` for Node's built-in modules; an ES module has none.
  banner: {
    js: 'import { createRequire as __createRequire } from "node:module";\nconst require = __createRequire(import.meta.url);',
  },
});
// Module wrappers compiled with their chunk, so the compile cache keeps them (scripts/eager-wrappers.ts).
for (const name of await readdir(dist)) {
  if (!name.endsWith(".js")) continue;
  const file = new URL(name, dist);
  const { text, count } = eagerWrappers(await readFile(file, "utf8"));
  if (count > 0) await writeFile(file, text);
}
await cp(new URL("src/http/ui/", root), new URL("ui/", dist), { recursive: true });
await chmod(new URL("main.js", dist), 0o755);
