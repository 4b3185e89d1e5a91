/**
 * Problems found while loading a configuration. Every problem names the option it is about with a
 * display path (`mcp_servers.filesystem.command`, `satellites.devices.kitchen.token`, `args[1]`),
 * using the server name / device id rather than a list index wherever one is known.
 */

export type PathSegment = string | number;

export interface ConfigProblem {
  /** Display path of the option; the file name for problems with the file itself. */
  readonly path: string;
  readonly message: string;
}

/** One line per problem, `path: message` — the `--check-config` output format. */
export function formatProblem(p: ConfigProblem): string {
  return p.path === "" ? p.message : `${p.path}: ${p.message}`;
}

/** Thrown by `loadConfig` callers that want an exception; carries every problem. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super(`invalid configuration:\n${problems.map(formatProblem).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The `name`/`id` that identifies an element of a named list, if it has a usable one. */
function elementName(list: unknown, index: number, key: string): string | undefined {
  if (!Array.isArray(list)) return undefined;
  const el: unknown = list[index];
  if (!isRecord(el)) return undefined;
  const v = el[key];
  return typeof v === "string" && v !== "" ? v : undefined;
}

/**
 * Renders a path over the normalised configuration (where `mcp_servers` and `satellites.devices`
 * are lists) for people: list elements are named by their server name / device id.
 */
export function displayPath(path: readonly PathSegment[], root: unknown): string {
  const segs: PathSegment[] = [...path];
  if (isRecord(root)) {
    if (segs[0] === "mcp_servers" && typeof segs[1] === "number") {
      segs[1] = elementName(root.mcp_servers, segs[1], "name") ?? segs[1];
    }
    const sat = root.satellites;
    if (segs[0] === "satellites" && segs[1] === "devices" && typeof segs[2] === "number" && isRecord(sat)) {
      segs[2] = elementName(sat.devices, segs[2], "id") ?? segs[2];
    }
  }
  let out = "";
  for (const s of segs) {
    if (typeof s === "number") out += `[${s}]`;
    else out += out === "" ? s : `.${s}`;
  }
  return out;
}
