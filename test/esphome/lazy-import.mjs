// Imports the module named on the command line and reports whether `esphome-client` was resolved
// before and after a first connect attempt (to a closed port). Used by test/esphome-api.test.ts.
import { registerHooks } from "node:module";
import process from "node:process";

const seen = new Set();
registerHooks({
  resolve(spec, ctx, next) {
    seen.add(spec);
    return next(spec, ctx);
  },
});
const api = await import(process.argv[2]);
const before = seen.has("esphome-client");
const quiet = { trace() {}, debug() {}, warn() {}, error() {} };
await api
  .connectDevice({ host: "127.0.0.1", port: 1, clientInfo: "t", timeoutMs: 500, logger: quiet })
  .catch(() => undefined);
process.stdout.write(JSON.stringify({ before, after: seen.has("esphome-client") }));
