#!/usr/bin/env node
/**
 * The process entry (`node dist/main.js`, the package's bin; the command line itself is in cli.ts).
 * It turns on the compile cache before anything else loads, then loads the rest of the service, so
 * that from the second start on the service's code comes from the cache (compile-cache.ts).
 */
import { enableCompileCache } from "./compile-cache.js";

const compileCache = enableCompileCache(process.env);
const { runProcess } = await import("./cli.js");
runProcess({ compileCache });
