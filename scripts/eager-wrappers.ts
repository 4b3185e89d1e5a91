/**
 * Marks esbuild's module wrappers in a bundle for eager compilation, so that Node's compile cache
 * holds them (`npm run build` applies it to every chunk; test/build-eager.test.ts checks it).
 *
 * esbuild wraps each CommonJS dependency (and each lazily initialised ES module) in a method of an
 * object literal: `__commonJS({"node_modules/ws/lib/websocket.js"(exports, module) {…}})`. V8 compiles a
 * method lazily, on its first call, and the compile cache (`module.enableCompileCache`) stores code
 * compiled when the module itself is compiled: so every start compiled every wrapper again (about
 * 10 ms of the service's start-up). V8 compiles a function expression in parentheses eagerly (its
 * guess that the function is called at once), so each wrapper is rewritten to
 * `"node_modules/ws/lib/websocket.js": (function(exports, module) {…})`, which calls the same way and
 * now comes from the cache. Functions inside a wrapper stay lazy.
 */
import ts from "typescript";

const WRAPPERS = new Set(["__commonJS", "__esm"]);

/** `source` with every wrapper method written as a parenthesised function expression. */
export function eagerWrappers(source: string): { text: string; count: number } {
  const file = ts.createSourceFile("chunk.js", source, ts.ScriptTarget.Latest, false, ts.ScriptKind.JS);
  const edits: { at: number; insert: string }[] = [];
  const visit = (node: ts.Node): void => {
    if (
      ts.isCallExpression(node) &&
      ts.isIdentifier(node.expression) &&
      WRAPPERS.has(node.expression.text) &&
      node.arguments.length === 1
    ) {
      const [arg] = node.arguments;
      if (arg !== undefined && ts.isObjectLiteralExpression(arg)) {
        for (const p of arg.properties) {
          if (!ts.isMethodDeclaration(p) || p.body === undefined || p.asteriskToken || p.modifiers) continue;
          edits.push({ at: p.name.end, insert: ":(function" }, { at: p.end, insert: ")" });
        }
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  edits.sort((a, b) => b.at - a.at);
  let text = source;
  for (const e of edits) text = text.slice(0, e.at) + e.insert + text.slice(e.at);
  return { text, count: edits.length / 2 };
}
