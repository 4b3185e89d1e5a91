/**
 * The tool catalog shared by every session of an engine: which native servers are offered (enabled at
 * runtime or not), which client function tools go with them, the approval policy of any server, and the
 * failover that gives a native server a client route once an upstream could not list its tools.
 */
import type { Config, McpServerConfig, RequireApproval } from "../config/model.js";
import type { Logger } from "../log.js";
import type { RoutedTool, ToolProvider } from "../mcp/types.js";

/** What a session needs to know about tools beyond the client provider; the engine implements it. */
export interface ToolCatalog {
  /** Enabled native servers, config order. */
  nativeServers(): readonly McpServerConfig[];
  /** Function tools for a session that has failed over the given native servers. */
  functionTools(failedOver: ReadonlySet<string>): readonly RoutedTool[];
  /** Approval policy of a server by name; unknown servers are `always`. */
  policyOf(server: string): RequireApproval;
  /**
   * Gives a native server a client route (idempotent across sessions). Resolves true once its client
   * tools can be offered, false when it has no route.
   */
  failover(server: string): Promise<boolean>;
}

export interface FailoverTarget {
  addServer(cfg: McpServerConfig): Promise<unknown>;
}

export interface EngineToolCatalogOptions {
  /** The effective server list; only `mode: native` ones are used. */
  readonly servers: readonly McpServerConfig[];
  readonly config: Config;
  readonly tools: ToolProvider & Partial<FailoverTarget>;
  /** Client routes by native server name; a native server's `fallback_url` is a route too. */
  readonly failoverRoutes?: ReadonlyMap<string, McpServerConfig> | undefined;
  /** Longest a failover waits for its route before offering it anyway. */
  readonly readyTimeoutMs: number;
  readonly logger: Logger;
}

export class EngineToolCatalog implements ToolCatalog {
  readonly #o: EngineToolCatalogOptions;
  #native: McpServerConfig[];
  readonly #enabled = new Map<string, boolean>();
  readonly #failovers = new Map<string, Promise<boolean>>();

  constructor(opts: EngineToolCatalogOptions) {
    this.#o = opts;
    this.#native = opts.servers.filter((s) => s.mode === "native");
    for (const s of this.#native) this.#enabled.set(s.name, s.enabled);
  }

  /** Every configured native server, enabled or not, config order. */
  configured(): readonly McpServerConfig[] {
    return this.#native;
  }

  isEnabled(server: McpServerConfig): boolean {
    return this.#enabled.get(server.name) ?? server.enabled;
  }

  /** A failover of `name` was started and has not failed. */
  hasFailedOver(name: string): boolean {
    return this.#failovers.has(name);
  }

  /**
   * Enables or disables a native server: `unknown` when none has that name, `changed` when the catalog
   * changed (sessions are to get their tools again).
   */
  setEnabled(name: string, enabled: boolean): "unknown" | "unchanged" | "changed" {
    if (!this.#native.some((s) => s.name === name)) return "unknown";
    if (this.#enabled.get(name) === enabled) return "unchanged";
    this.#enabled.set(name, enabled);
    return "changed";
  }

  /** Replaces the server list (config reload); runtime enable/disable choices are kept. */
  setServers(servers: readonly McpServerConfig[]): void {
    this.#native = servers.filter((s) => s.mode === "native");
    for (const s of this.#native) if (!this.#enabled.has(s.name)) this.#enabled.set(s.name, s.enabled);
  }

  nativeServers(): readonly McpServerConfig[] {
    return this.#native.filter((s) => this.isEnabled(s));
  }

  functionTools(failedOver: ReadonlySet<string>): readonly RoutedTool[] {
    const all = this.#o.tools.tools();
    if (this.#failovers.size === 0) return all;
    return all.filter((t) => !this.#failovers.has(t.server) || failedOver.has(t.server));
  }

  policyOf(server: string): RequireApproval {
    return (
      this.#native.find((s) => s.name === server)?.require_approval ??
      this.#o.config.mcp_servers.find((s) => s.name === server)?.require_approval ??
      this.#o.failoverRoutes?.get(server)?.require_approval ??
      "always"
    );
  }

  failover(server: string): Promise<boolean> {
    const existing = this.#failovers.get(server);
    if (existing) return existing;
    const log = this.#o.logger;
    const route = this.#routeOf(server);
    const add = this.#o.tools.addServer?.bind(this.#o.tools);
    if (!route || !add) {
      log.warn({ server }, "native MCP server has no client route; its tools stay unavailable");
      return Promise.resolve(false);
    }
    log.info({ server, transport: route.transport }, "moving native MCP server to client mode");
    const timeoutMs = Math.min(this.#o.readyTimeoutMs, route.timeout * 1000);
    let settle!: (moved: boolean) => void;
    const p = new Promise<boolean>((resolve) => (settle = resolve));
    // Registered before the manager hears of the route, so its tools never show in other sessions.
    this.#failovers.set(server, p);
    const timer = setTimeout(() => settle(true), timeoutMs);
    timer.unref();
    add(route).then(
      () => settle(true),
      (err: unknown) => {
        log.warn({ server, err: err instanceof Error ? err.message : String(err) }, "failover route failed");
        this.#failovers.delete(server);
        settle(false);
      },
    );
    void p.finally(() => clearTimeout(timer));
    return p;
  }

  #routeOf(server: string): McpServerConfig | undefined {
    const route = this.#o.failoverRoutes?.get(server);
    if (route) return { ...route, name: server, mode: "client" };
    const native = this.#native.find((s) => s.name === server);
    if (!native?.fallback_url) return undefined;
    const { fallback_url: url, ...rest } = native;
    return { ...rest, mode: "client", transport: "http", server_url: url };
  }
}
