/**
 * Enable/disable of MCP servers at runtime, applied live to every part that runs servers (the client
 * manager, the realtime engine's native list) and persisted in the runtime state.
 */
import { ApiError } from "../errors.js";
import type { Logger } from "../log.js";
import type { ServerStatus } from "../mcp/types.js";
import type { RuntimeState } from "./runtime-state.js";

/** A part of the service that runs some servers and can switch them on and off live. */
export interface ServerToggleTarget {
  /** The servers it knows, enabled or not. */
  status(): readonly ServerStatus[];
  /** Applies at once (tools appear/disappear, sessions are updated). */
  setEnabled(name: string, enabled: boolean): Promise<void> | void;
}

/** What the admin API needs: the server list and a toggle. */
export interface ServerAdmin {
  /** Every known server, one entry per name, sorted by name. */
  list(): readonly ServerStatus[];
  /**
   * Switches a server on or off live and persists the choice. Resolves with its new status.
   * Rejects with `ApiError("unknown_server")` when no target knows `name`.
   */
  setEnabled(name: string, enabled: boolean): Promise<ServerStatus>;
}

const RANK: Record<ServerStatus["state"], number> = { up: 0, connecting: 1, down: 2, disabled: 3 };

/**
 * One entry per server name. A native server moved to its client route (failover) shows up in
 * both parts; the entry that is doing better wins (up > connecting > down > disabled).
 */
export function mergeServerStatuses(lists: readonly (readonly ServerStatus[])[]): ServerStatus[] {
  const byName = new Map<string, ServerStatus>();
  for (const list of lists)
    for (const s of list) {
      const seen = byName.get(s.name);
      if (!seen || RANK[s.state] < RANK[seen.state]) byName.set(s.name, s);
    }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

export class PersistentServerAdmin implements ServerAdmin {
  readonly #targets: readonly ServerToggleTarget[];
  readonly #state: RuntimeState;
  readonly #log: Logger | undefined;

  constructor(opts: { targets: readonly ServerToggleTarget[]; state: RuntimeState; logger?: Logger }) {
    this.#targets = opts.targets;
    this.#state = opts.state;
    this.#log = opts.logger;
  }

  list(): readonly ServerStatus[] {
    return mergeServerStatuses(this.#targets.map((t) => t.status()));
  }

  async setEnabled(name: string, enabled: boolean): Promise<ServerStatus> {
    const owners = this.#targets.filter((t) => t.status().some((s) => s.name === name));
    if (owners.length === 0) throw new ApiError("unknown_server", `no MCP server named "${name}"`);
    for (const t of owners) await t.setEnabled(name, enabled);
    await this.#state.setServerEnabled(name, enabled);
    this.#log?.info({ server: name, enabled }, enabled ? "server enabled" : "server disabled");
    const now = this.list().find((s) => s.name === name);
    if (!now) throw new ApiError("unknown_server", `no MCP server named "${name}"`);
    return now;
  }
}
