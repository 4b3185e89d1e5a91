/**
 * Native MCP servers of one session as the upstream lists their tools: per server `pending` until
 * listing starts, then listed, failed, or moved to client mode (failover) for this session. The session
 * is usable once no server is pending or listing (`settled`).
 */
import type { McpServerConfig } from "../config/model.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ToolCatalog } from "./tool-catalog.js";

/** Per native server: `pending` until upstream starts listing its tools. */
export type NativeListState = "pending" | "listing" | "listed" | "failed" | "failed_over";

export interface NativeListingDeps {
  readonly catalog: ToolCatalog;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly closed: () => boolean;
  /** A server moved to client mode: the session's tools are to be sent again. */
  readonly toolsChanged: () => void;
  /** A server's state may have settled. */
  readonly progressed: () => void;
}

export class NativeListing {
  readonly #d: NativeListingDeps;
  readonly #states = new Map<string, NativeListState>();
  readonly #failedOver = new Set<string>();
  /** `mcp_list_tools` item id → server. */
  readonly #items = new Map<string, string>();
  /** `mcp_list_tools.completed|failed` that arrived before their item. */
  readonly #early = new Map<string, boolean>();

  constructor(deps: NativeListingDeps) {
    this.#d = deps;
  }

  states(): ReadonlyMap<string, NativeListState> {
    return this.#states;
  }

  /** Servers moved to client mode for this session. */
  get failedOver(): ReadonlySet<string> {
    return this.#failedOver;
  }

  /** The enabled native servers this session offers (not failed over), config order. */
  servers(): McpServerConfig[] {
    return this.#d.catalog.nativeServers().filter((s) => !this.#failedOver.has(s.name));
  }

  /** No server is pending or listing. */
  get settled(): boolean {
    for (const st of this.#states.values()) if (st === "pending" || st === "listing") return false;
    return true;
  }

  /**
   * The session offers `servers` from now on: new ones are pending, dropped ones forgotten (a server
   * failed over stays, so it is never offered natively again).
   */
  offer(servers: readonly McpServerConfig[]): void {
    const names = new Set(servers.map((s) => s.name));
    for (const name of [...this.#states.keys()])
      if (!names.has(name) && this.#states.get(name) !== "failed_over") this.#states.delete(name);
    for (const name of names) if (!this.#states.has(name)) this.#states.set(name, "pending");
  }

  /** The `mcp_list_tools` item of a server, from whichever item event came first. */
  onItem(itemId: string, server: string): void {
    if (this.#items.has(itemId)) return;
    this.#items.set(itemId, server);
    const early = this.#early.get(itemId);
    this.#early.delete(itemId);
    if (early !== undefined) return this.onListed(itemId, early);
    if (this.#states.get(server) === "pending") this.#states.set(server, "listing");
  }

  /** `mcp_list_tools.completed|failed`; a failed server is failed over. */
  onListed(itemId: string, ok: boolean): void {
    const server = this.#items.get(itemId);
    if (server === undefined) {
      // The outcome came before its item: apply it when the item arrives.
      this.#early.set(itemId, ok);
      return;
    }
    if (!this.#states.has(server)) return;
    this.#d.metrics.mcpServerUp.set({ server, mode: "native" }, ok ? 1 : 0);
    if (ok) {
      this.#states.set(server, "listed");
      return this.#d.progressed();
    }
    this.#states.set(server, "failed");
    this.#d.log.warn({ server }, "upstream could not list the tools of a native MCP server");
    void this.#failover(server);
  }

  /** The ready timeout passed: every server still pending or listing failed (and is failed over). */
  timeOut(): void {
    for (const [server, st] of this.#states)
      if (st === "pending" || st === "listing") {
        this.#states.set(server, "failed");
        this.#d.metrics.mcpServerUp.set({ server, mode: "native" }, 0);
        this.#d.log.warn({ server }, "native MCP server not listed in time");
        void this.#failover(server);
      }
  }

  async #failover(server: string): Promise<void> {
    let moved = false;
    try {
      moved = await this.#d.catalog.failover(server);
    } catch (err) {
      this.#d.log.warn({ server, err: err instanceof Error ? err.message : String(err) }, "failover failed");
    }
    if (this.#d.closed()) return;
    if (moved) {
      this.#failedOver.add(server);
      this.#states.set(server, "failed_over");
      this.#d.metrics.mcpFailovers.inc({ server });
      this.#d.log.info({ server }, "native MCP server moved to client mode for this session");
      this.#d.toolsChanged();
    }
    this.#d.progressed();
  }
}
