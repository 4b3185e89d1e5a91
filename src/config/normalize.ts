/**
 * Brings both configuration sources to the input shape of `ConfigSchema` (pure, no I/O):
 *
 * - `mcp_servers` as a map `{<name>: {...}}` (the seed's YAML) or a list of objects with `name`
 *   (the add-on options form) becomes a list with `name`, in source order;
 * - list forms of free-form maps, which the add-on options UI needs, become maps:
 *   `env: ["KEY=value"]`, `headers: ["Name: value"]`, and `approval_always: [tool]` /
 *   `approval_never: [tool]` next to `require_approval` for a per-tool policy (servers and
 *   `home_assistant`);
 * - `null` values (an empty YAML key) count as absent; in the options form empty strings and an empty
 *   `allowed_tools` list do too, because the add-on UI cannot leave a field unset otherwise;
 * - the legacy v0.1 `home_assistant.mcp` block becomes an `mcp_servers.home_assistant` entry; as an
 *   add-on without `url`/`token` it is dropped with a warning, since the Supervisor route (zero-config)
 *   brings Home Assistant's tools.
 */
import type { PathSegment } from "./problems.js";

export type ConfigForm = "yaml" | "options";

export interface Finding {
  readonly path: readonly PathSegment[];
  readonly message: string;
}

export interface Normalized {
  readonly value: Record<string, unknown>;
  readonly problems: Finding[];
  readonly warnings: Finding[];
}

export interface NormalizeContext {
  /** Running as a Home Assistant add-on (`SUPERVISOR_TOKEN` set). */
  readonly addon: boolean;
}

export const LEGACY_HA_SERVER = "home_assistant";
const LEGACY_SSE_ENDPOINT = "/mcp_server/sse";

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Copy without `null`s (and, in the options form, without empty strings). */
function dropAbsent(value: unknown, form: ConfigForm): unknown {
  if (Array.isArray(value)) return value.map((v) => dropAbsent(v, form));
  if (!isRecord(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === null || v === undefined) continue;
    if (form === "options" && v === "") continue;
    out[k] = dropAbsent(v, form);
  }
  return out;
}

/** Parses `["K<sep>V", ...]` into a map; a map is returned as is. */
function listToMap(
  value: unknown,
  sep: "=" | ":",
  shape: string,
  path: readonly PathSegment[],
  problems: Finding[],
): unknown {
  if (!Array.isArray(value)) return value;
  const out: Record<string, string> = {};
  value.forEach((item, i) => {
    const cut = typeof item === "string" ? item.indexOf(sep) : -1;
    if (typeof item !== "string" || cut <= 0) {
      problems.push({ path: [...path, i], message: `expected "${shape}"` });
      return;
    }
    const key = item.slice(0, cut).trim();
    const val = sep === "=" ? item.slice(cut + 1) : item.slice(cut + 1).trim();
    if (key === "") {
      problems.push({ path: [...path, i], message: `expected "${shape}"` });
    } else if (Object.hasOwn(out, key)) {
      problems.push({ path: [...path, i], message: `duplicate "${key}"` });
    } else {
      out[key] = val;
    }
  });
  return out;
}

function stringList(value: unknown, path: readonly PathSegment[], problems: Finding[]): string[] {
  if (Array.isArray(value) && value.every((v): v is string => typeof v === "string" && v !== ""))
    return value;
  problems.push({ path, message: "expected a list of tool names" });
  return [];
}

/** Folds `approval_always` / `approval_never` into `require_approval`. */
function foldApprovalLists(
  server: Record<string, unknown>,
  path: readonly PathSegment[],
  problems: Finding[],
): void {
  const always = server.approval_always;
  const never = server.approval_never;
  delete server.approval_always;
  delete server.approval_never;
  if (always === undefined && never === undefined) return;
  const alwaysTools = always === undefined ? [] : stringList(always, [...path, "approval_always"], problems);
  const neverTools = never === undefined ? [] : stringList(never, [...path, "approval_never"], problems);
  if (alwaysTools.length === 0 && neverTools.length === 0) return;
  const mode = server.require_approval;
  if (mode === "never") {
    problems.push({
      path: [...path, "require_approval"],
      message:
        "cannot be never together with approval_always/approval_never (unlisted tools would need approval)",
    });
    return;
  }
  if (mode !== undefined && mode !== "always") {
    problems.push({
      path: [...path, "require_approval"],
      message: "use either a per-tool map or approval_always/approval_never, not both",
    });
    return;
  }
  const map: Record<string, "always" | "never"> = {};
  for (const t of alwaysTools) map[t] = "always";
  for (const t of neverTools) {
    if (map[t] === "always") {
      problems.push({ path: [...path, "approval_never"], message: `"${t}" is also in approval_always` });
      continue;
    }
    map[t] = "never";
  }
  server.require_approval = map;
}

function normalizeServer(
  server: Record<string, unknown>,
  form: ConfigForm,
  path: readonly PathSegment[],
  problems: Finding[],
): Record<string, unknown> {
  const s = { ...server };
  if (s.env !== undefined) s.env = listToMap(s.env, "=", "KEY=value", [...path, "env"], problems);
  if (s.headers !== undefined)
    s.headers = listToMap(s.headers, ":", "Name: value", [...path, "headers"], problems);
  foldToolPolicy(s, form, path, problems);
  return s;
}

/** `approval_always`/`approval_never` into `require_approval`; an empty options-form `allowed_tools` is unset. */
function foldToolPolicy(
  target: Record<string, unknown>,
  form: ConfigForm,
  path: readonly PathSegment[],
  problems: Finding[],
): void {
  foldApprovalLists(target, path, problems);
  if (form === "options" && Array.isArray(target.allowed_tools) && target.allowed_tools.length === 0)
    delete target.allowed_tools;
}

/** Map or list → list with `name`; problems for entries that are not objects or have a conflicting name. */
function serverList(raw: unknown, problems: Finding[]): Record<string, unknown>[] | undefined {
  if (raw === undefined) return undefined;
  const out: Record<string, unknown>[] = [];
  if (Array.isArray(raw)) {
    raw.forEach((entry, i) => {
      if (!isRecord(entry))
        problems.push({ path: ["mcp_servers", i], message: "expected a server object with name" });
      else out.push(entry);
    });
    return out;
  }
  if (isRecord(raw)) {
    for (const [name, entry] of Object.entries(raw)) {
      if (!isRecord(entry)) {
        problems.push({ path: ["mcp_servers", name], message: "expected a server object" });
        continue;
      }
      if (entry.name !== undefined && entry.name !== name) {
        problems.push({ path: ["mcp_servers", name, "name"], message: `differs from the map key "${name}"` });
        continue;
      }
      out.push({ ...entry, name });
    }
    return out;
  }
  problems.push({ path: ["mcp_servers"], message: "expected a map of servers by name or a list of servers" });
  return undefined;
}

/**
 * v0.1 `home_assistant: {url, token, mcp: {enabled, sse_endpoint, auth_method, connection_timeout, ...}}`
 * → a client SSE server `home_assistant`, unless one is already configured.
 */
function migrateLegacy(
  value: Record<string, unknown>,
  servers: Record<string, unknown>[],
  context: NormalizeContext,
  problems: Finding[],
  warnings: Finding[],
): void {
  const ha = value.home_assistant;
  if (!isRecord(ha) || ha.mcp === undefined) return;
  const legacy = ha.mcp;
  const rest = { ...ha };
  delete rest.mcp;
  value.home_assistant = rest;
  const path = ["home_assistant", "mcp"];
  if (servers.some((s) => s.name === LEGACY_HA_SERVER)) {
    warnings.push({
      path,
      message: `deprecated v0.1 block ignored: mcp_servers.${LEGACY_HA_SERVER} is configured; remove this block`,
    });
    return;
  }
  if (!isRecord(legacy)) {
    problems.push({ path, message: "expected a mapping (deprecated v0.1 block)" });
    return;
  }
  const endpoint = legacy.sse_endpoint ?? LEGACY_SSE_ENDPOINT;
  if (context.addon && (typeof ha.url !== "string" || typeof ha.token !== "string")) {
    warnings.push({
      path,
      message:
        "deprecated v0.1 block removed: as an add-on, Home Assistant's tools come through the Supervisor " +
        "without url or token; delete this block" +
        (legacy.enabled === false
          ? " (to turn those tools off, switch the home_assistant server off in the add-on's page)"
          : ""),
    });
    return;
  }
  if (typeof ha.url !== "string" || typeof ha.token !== "string" || typeof endpoint !== "string") {
    problems.push({
      path,
      message: "the deprecated v0.1 block needs home_assistant.url and home_assistant.token",
    });
    return;
  }
  if (legacy.auth_method !== undefined && legacy.auth_method !== "token")
    warnings.push({
      path: [...path, "auth_method"],
      message: `${JSON.stringify(legacy.auth_method)} is not supported; token is used`,
    });
  const dropped = ["reconnect_attempts", "ssl_verify"].filter((k) => legacy[k] !== undefined);
  const server: Record<string, unknown> = {
    name: LEGACY_HA_SERVER,
    mode: "client",
    transport: "sse",
    server_url: ha.url.replace(/\/+$/, "") + (endpoint.startsWith("/") ? endpoint : `/${endpoint}`),
    authorization: `Bearer ${ha.token}`,
  };
  if (legacy.enabled !== undefined) server.enabled = legacy.enabled;
  if (legacy.connection_timeout !== undefined) server.timeout = legacy.connection_timeout;
  servers.push(server);
  warnings.push({
    path,
    message:
      `deprecated v0.1 block: migrated to mcp_servers.${LEGACY_HA_SERVER} (client, sse); move it there` +
      (dropped.length > 0 ? `; ${dropped.join(" and ")} no longer apply` : ""),
  });
}

/** Normalises a parsed configuration document (already known to be a mapping). */
export function normalizeConfig(
  raw: Record<string, unknown>,
  form: ConfigForm,
  context: NormalizeContext = { addon: false },
): Normalized {
  const problems: Finding[] = [];
  const warnings: Finding[] = [];
  const value = dropAbsent(raw, form) as Record<string, unknown>;
  const listed = serverList(value.mcp_servers, problems);
  const servers = (listed ?? []).map((s, i) => normalizeServer(s, form, ["mcp_servers", i], problems));
  migrateLegacy(value, servers, context, problems, warnings);
  if (isRecord(value.home_assistant)) {
    const ha = { ...value.home_assistant };
    foldToolPolicy(ha, form, ["home_assistant"], problems);
    value.home_assistant = ha;
  }
  if (listed !== undefined || servers.length > 0) value.mcp_servers = servers;
  else delete value.mcp_servers;
  return { value, problems, warnings };
}
