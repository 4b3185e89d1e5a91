/**
 * Node's module compile cache (`module.enableCompileCache`) under the data folder, so the second and
 * every later start of the process reuses the code V8 compiled the first time instead of parsing
 * and compiling every module again. The add-on's data folder (/data) survives restarts and updates;
 * Node keys each entry by file and content and by its own version, so a new build or a new Node
 * simply adds fresh entries.
 */
import module from "node:module";
import { join } from "node:path";
import { resolveDataDir, type Env } from "./data-dir.js";

/** `<data dir>/cache/node-compile`. */
export function compileCacheDir(env: Env, cwd = process.cwd()): string {
  return join(resolveDataDir(env, cwd), "cache", "node-compile");
}

export interface CompileCacheResult {
  /**
   * `enabled`: modules loaded from now on use the cache; `already-enabled`: by `NODE_COMPILE_CACHE`
   * or an earlier call; `disabled`: `NODE_DISABLE_COMPILE_CACHE` is set; `failed`: the folder could
   * not be created or written (`message` says why), and the process goes on without the cache.
   */
  readonly status: "enabled" | "already-enabled" | "disabled" | "failed";
  readonly directory?: string;
  readonly message?: string;
}

/**
 * Enables the cache for every module loaded after this call (not the caller's own). Never throws.
 */
export function enableCompileCache(env: Env, cwd = process.cwd()): CompileCacheResult {
  try {
    const { compileCacheStatus: S } = module.constants;
    const r = module.enableCompileCache(compileCacheDir(env, cwd));
    const status =
      r.status === S.ENABLED
        ? "enabled"
        : r.status === S.ALREADY_ENABLED
          ? "already-enabled"
          : r.status === S.DISABLED
            ? "disabled"
            : "failed";
    return {
      status,
      ...(r.directory === undefined ? {} : { directory: r.directory }),
      ...(r.message === undefined ? {} : { message: r.message }),
    };
  } catch (err) {
    return { status: "failed", message: err instanceof Error ? err.message : String(err) };
  }
}
