/**
 * The function tools the model sees, built from the tool lists of the client MCP servers.
 * Pure: no I/O, no clock; the same input always gives the same names in the same order.
 */
import { createHash } from "node:crypto";
import type { RoutedTool } from "./types.js";

/** Realtime function names: `^[a-zA-Z0-9_-]{1,64}$`. */
export const FUNCTION_NAME_RE = /^[a-zA-Z0-9_-]{1,64}$/;
export const MAX_FUNCTION_NAME = 64;
/** Separator between server and tool in a qualified name (`<server>__<tool>`). */
export const QUALIFIER = "__";
const HASH_CHARS = 8;

/** A tool as an MCP server lists it (the part of the SDK's `Tool` the registry reads). */
export interface ListedTool {
  readonly name: string;
  readonly title?: string;
  readonly description?: string;
  readonly inputSchema: Readonly<Record<string, unknown>>;
}

/** One connected server's contribution. */
export interface ServerTools {
  readonly server: string;
  /** Lower number wins a name conflict; ties go to the server name that sorts first. */
  readonly priority: number;
  /** When set, only these tools (by their name on the server) are exposed. */
  readonly allowedTools?: readonly string[];
  readonly tools: readonly ListedTool[];
}

function shortHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, HASH_CHARS);
}

/**
 * Makes `raw` a valid function name: characters outside `[a-zA-Z0-9_-]` become `_`; a name longer
 * than 64 characters is cut and ends in `_` plus 8 hex characters of a SHA-256 of `raw`, so two long
 * names that share a prefix stay distinct and the result is the same on every run. An empty name
 * becomes `tool_<hash>`.
 */
export function sanitizeFunctionName(raw: string): string {
  const clean = raw.replace(/[^a-zA-Z0-9_-]/g, "_");
  if (clean.length === 0) return `tool_${shortHash(raw)}`;
  if (clean.length <= MAX_FUNCTION_NAME) return clean;
  return withHash(clean, raw);
}

/** `base` cut so that `base_<hash of seed>` fits in 64 characters. */
function withHash(base: string, seed: string): string {
  const suffix = `_${shortHash(seed)}`;
  return `${base.slice(0, MAX_FUNCTION_NAME - suffix.length)}${suffix}`;
}

/** The qualified name of a tool: `<server>__<tool>`, sanitised as a whole. */
export function qualifiedName(server: string, tool: string): string {
  return sanitizeFunctionName(`${server}${QUALIFIER}${tool}`);
}

/**
 * A tool's JSON Schema as a Realtime function's `parameters`: the server's schema with `$schema`
 * dropped (a dialect marker the function schema has no use for) and the top level forced to an
 * object with a `properties` map, which function parameters must be. Everything else (descriptions,
 * enums, nested schemas, `required`) passes through untouched.
 */
export function functionParameters(inputSchema: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = inputSchema;
  const properties = rest.properties;
  return {
    ...rest,
    type: "object",
    properties: typeof properties === "object" && properties !== null ? properties : {},
  };
}

function describe(tool: ListedTool): string {
  return tool.description ?? tool.title ?? "";
}

interface Candidate {
  readonly entry: ServerTools;
  readonly tool: ListedTool;
}

function byPriority(a: ServerTools, b: ServerTools): number {
  return a.priority - b.priority || (a.server < b.server ? -1 : a.server > b.server ? 1 : 0);
}

/**
 * An immutable set of routed tools. Build a new one whenever a server's list changes.
 *
 * Naming, in this order:
 * 1. Tools not in a server's `allowedTools` (when set) are left out.
 * 2. Each tool's bare name is sanitised. Among the tools that share a sanitised bare name, the one
 *    from the server with the lowest `priority` (then the server name that sorts first) keeps it.
 * 3. Every other tool is named `<server>__<tool>` (sanitised). If that name is taken too, it gets a
 *    hash suffix of `<server>\0<tool>`, which is unique per route.
 */
export class ToolRegistry {
  readonly #tools: readonly RoutedTool[];
  readonly #byName: ReadonlyMap<string, RoutedTool>;

  constructor(servers: readonly ServerTools[] = []) {
    const ordered = [...servers].sort(byPriority);
    const claims = new Map<string, Candidate[]>();
    for (const entry of ordered) {
      const allowed = entry.allowedTools ? new Set(entry.allowedTools) : undefined;
      const seen = new Set<string>();
      const tools = [...entry.tools].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const tool of tools) {
        if (allowed && !allowed.has(tool.name)) continue;
        if (seen.has(tool.name)) continue;
        seen.add(tool.name);
        const bare = sanitizeFunctionName(tool.name);
        const list = claims.get(bare);
        if (list) list.push({ entry, tool });
        else claims.set(bare, [{ entry, tool }]);
      }
    }

    const byName = new Map<string, RoutedTool>();
    const qualified: Candidate[] = [];
    for (const [bare, list] of claims) {
      const [winner, ...others] = list;
      if (winner) byName.set(bare, route(bare, winner));
      qualified.push(...others);
    }
    for (const c of qualified) {
      let name = qualifiedName(c.entry.server, c.tool.name);
      if (byName.has(name)) name = withHash(name, `${c.entry.server}\0${c.tool.name}`);
      byName.set(name, route(name, c));
    }

    this.#tools = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.#byName = byName;
  }

  /** Every routed tool, sorted by exposed name. */
  tools(): readonly RoutedTool[] {
    return this.#tools;
  }

  get(name: string): RoutedTool | undefined {
    return this.#byName.get(name);
  }

  get size(): number {
    return this.#tools.length;
  }

  /** Exposed names of one server's tools. */
  toolsOf(server: string): readonly RoutedTool[] {
    return this.#tools.filter((t) => t.server === server);
  }
}

function route(name: string, c: Candidate): RoutedTool {
  return {
    name,
    description: describe(c.tool),
    parameters: functionParameters(c.tool.inputSchema),
    server: c.entry.server,
    tool: c.tool.name,
  };
}
