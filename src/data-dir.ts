/**
 * Where the service keeps its state, decided from the environment alone. Kept free of heavy imports:
 * the process entry (main.ts) reads it before anything else loads.
 */
import { resolve } from "node:path";

export type Env = Readonly<Record<string, string | undefined>>;

/** Running as a Home Assistant add-on: the Supervisor gives every add-on a token. */
export function isAddon(env: Env): boolean {
  return (env.SUPERVISOR_TOKEN ?? "") !== "";
}

/** `OPENVOICE_DATA_DIR`, else `/data` as an add-on, else `./data` (absolute). */
export function resolveDataDir(env: Env, cwd = process.cwd()): string {
  const configured = env.OPENVOICE_DATA_DIR;
  if (configured !== undefined && configured !== "") return resolve(cwd, configured);
  return isAddon(env) ? "/data" : resolve(cwd, "data");
}
