/**
 * Client mode: the service connects to MCP servers itself (stdio children, Streamable HTTP, SSE)
 * and offers their tools to the model as function tools.
 */
import { performance } from "node:perf_hooks";
import type { McpServerConfig } from "../config/model.js";
import { ApiError } from "../errors.js";
import type { Logger } from "../log.js";
import { initialiseServerSeries, initialiseToolSeries, type Metrics } from "../metrics.js";
import { afterWaitingIo } from "../turns.js";
import { DEFAULT_BACKOFF, type Backoff } from "./backoff.js";
import type * as Connections from "./connection.js";
import type { CallResult, ServerConnection } from "./connection.js";
import { ToolRegistry } from "./registry.js";
import type { TransportOptions } from "./transport.js";
import type { RoutedTool, ServerStatus, ToolCallOutcome, ToolProvider } from "./types.js";

export interface ClientMcpManagerOptions {
  /** Every configured server; only `mode: "client"` ones are managed, native ones are ignored. */
  readonly servers: readonly McpServerConfig[];
  readonly logger: Logger;
  readonly metrics?: Metrics;
  /** Caps every call's timeout (a server's own `timeout` applies when it is shorter). */
  readonly callTimeoutMs?: number;
  /** Reconnect delays after a failure. Default 1 s doubling up to 60 s, with jitter. */
  readonly backoff?: Backoff;
  /** Sent as `clientInfo` in `initialize`. */
  readonly clientInfo?: { readonly name: string; readonly version: string };
  /** Environment the stdio allow-list reads from. Default `process.env`. */
  readonly parentEnv?: NodeJS.ProcessEnv;
  /** Ping interval for servers that are up (0: off). Default 30 s. */
  readonly healthCheckMs?: number;
}

const MODE = "client";

interface PendingCall {
  readonly server: string;
  readonly tool: string;
  readonly outcome: ToolCallOutcome["outcome"];
  readonly seconds: number | null;
}
/** Longest `close()` may take, whatever the servers do: inside the service's 5 s shutdown budget. */
const CLOSE_BOUND_MS = 4000;

type ConnectionModule = typeof Connections;
/**
 * The connection code, and with it the MCP SDK (its zod schemas, ajv and the transports), loads on
 * first use rather than at start-up: the service listens without waiting for it, and a service with
 * no client-mode server never loads it.
 */
let connectionModule: Promise<ConnectionModule> | undefined;
const loadConnectionModule = (): Promise<ConnectionModule> =>
  (connectionModule ??= import("./connection.js"));

/** `argsJson` as an argument object, or why it is not one. */
export function parseArguments(
  argsJson: string,
): { ok: true; args: Record<string, unknown> } | { ok: false; error: string } {
  if (argsJson.trim() === "") return { ok: true, args: {} };
  let value: unknown;
  try {
    value = JSON.parse(argsJson);
  } catch (err) {
    return { ok: false, error: `the arguments are not valid JSON (${(err as Error).message})` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return { ok: false, error: "the arguments must be a JSON object" };
  return { ok: true, args: value as Record<string, unknown> };
}

/**
 * Runs the client-mode MCP servers and routes function calls to them.
 *
 * - `connectAll` starts every enabled server in parallel; one that fails shows as `down` and is
 *   retried with backoff, without delaying the others.
 * - `tools()` is the current registry (see `ToolRegistry` for naming); listeners registered with
 *   `onToolsChanged` run after every change of it, synchronously, in registration order.
 * - `callTool` never rejects and never outlives its timeout by more than about a second.
 * - `close` ends every connection and kills every child process (and their descendants) within a
 *   few seconds; afterwards the manager offers no tools and starts nothing.
 */
export class ClientMcpManager implements ToolProvider {
  readonly #log: Logger;
  readonly #metrics: Metrics | undefined;
  readonly #callTimeoutMs: number;
  readonly #backoff: Backoff | undefined;
  readonly #clientInfo: { readonly name: string; readonly version: string };
  readonly #transportOptions: Omit<TransportOptions, "logger">;
  readonly #healthCheckMs: number | undefined;
  readonly #servers = new Map<string, ServerConnection>();
  /** Configured client servers until the connection code has loaded (then `#servers` holds them). */
  #configured: McpServerConfig[] | undefined;
  #loaded: Promise<ConnectionModule> | undefined;
  #Connection: ConnectionModule | undefined;
  readonly #listeners = new Set<() => void>();
  #registry = new ToolRegistry();
  #fingerprint = "";
  #closed = false;
  #pendingCalls: PendingCall[] = [];

  constructor(opts: ClientMcpManagerOptions) {
    this.#log = opts.logger;
    this.#metrics = opts.metrics;
    this.#callTimeoutMs = opts.callTimeoutMs ?? Number.POSITIVE_INFINITY;
    this.#backoff = opts.backoff;
    this.#clientInfo = opts.clientInfo ?? { name: "openvoice-mcp", version: "0.1.0" };
    this.#transportOptions = opts.parentEnv !== undefined ? { parentEnv: opts.parentEnv } : {};
    this.#healthCheckMs = opts.healthCheckMs;
    this.#configured = opts.servers.filter((cfg) => cfg.mode === MODE);
    for (const cfg of this.#configured) {
      const metrics = this.#metrics;
      if (metrics) initialiseServerSeries(metrics, cfg.name, MODE);
    }
  }

  /** Loads the connection code once and registers the configured servers; later calls are instant. */
  #load(): Promise<ConnectionModule> {
    this.#loaded ??= loadConnectionModule().then((m) => {
      this.#Connection = m;
      if (this.#closed) return m;
      const configured = this.#configured ?? [];
      this.#configured = undefined;
      for (const cfg of configured) if (!this.#servers.has(cfg.name)) this.#register(cfg);
      return m;
    });
    return this.#loaded;
  }

  /**
   * Connects every enabled server in parallel. Resolves when each has connected or failed its
   * first attempt (bounded by its `timeout`); never rejects.
   */
  async connectAll(): Promise<void> {
    if (this.#configured?.length === 0) return;
    await this.#load();
    // Loading the connection code was one piece of work; the connections are the next.
    await afterWaitingIo();
    if (this.#closed) return;
    await Promise.all([...this.#servers.values()].filter((c) => c.config.enabled).map((c) => c.start()));
  }

  tools(): readonly RoutedTool[] {
    return this.#registry.tools();
  }

  onToolsChanged(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Client servers, sorted by name, disabled ones included. */
  status(): readonly ServerStatus[] {
    // Before the connection code has loaded, each server shows as its first attempt would start.
    const waiting = (this.#configured ?? []).map((cfg): ServerStatus => ({
      name: cfg.name,
      mode: MODE,
      ...(cfg.transport !== undefined ? { transport: cfg.transport } : {}),
      enabled: cfg.enabled,
      state: cfg.enabled && !this.#closed ? "connecting" : "disabled",
      toolCount: 0,
      restarts: 0,
    }));
    return [...[...this.#servers.values()].map((c) => c.status()), ...waiting].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
  }

  /** Pids of the running stdio children (for diagnostics and tests). */
  childPids(): number[] {
    const pids: number[] = [];
    for (const c of this.#servers.values()) {
      const pid = c.pid();
      if (pid !== null) pids.push(pid);
    }
    return pids;
  }

  /**
   * Switches a server on or off. Off: its connection closes and its tools disappear before this
   * resolves. On: resolves after the first connection attempt (bounded by its `timeout`).
   * Rejects with `ApiError("unknown_server")` for a name the manager does not run.
   */
  async setEnabled(name: string, enabled: boolean): Promise<void> {
    if (this.#configured?.some((c) => c.name === name)) await this.#load();
    const conn = this.#servers.get(name);
    if (!conn) throw new ApiError("unknown_server", `no client MCP server named "${name}"`);
    if (enabled) {
      if (this.#closed) return;
      await conn.start();
    } else {
      await conn.disable();
    }
  }

  /**
   * Adds a client server at runtime (e.g. a native server moved to its client route), replacing one
   * of the same name. Resolves after its first connection attempt; never rejects. A native config
   * is ignored.
   */
  async addServer(cfg: McpServerConfig): Promise<void> {
    if (this.#closed) return;
    if (cfg.mode !== MODE) {
      this.#log.debug({ server: cfg.name }, "ignoring a native server");
      return;
    }
    await this.#load();
    if (this.#closed) return;
    const old = this.#servers.get(cfg.name);
    if (old) {
      this.#servers.delete(cfg.name);
      await old.close();
    }
    const conn = this.#register(cfg);
    this.#rebuild();
    if (cfg.enabled) await conn.start();
  }

  /** Removes a server: its connection closes and its tools disappear. Unknown names are ignored. */
  async removeServer(name: string): Promise<void> {
    if (this.#configured?.some((c) => c.name === name)) await this.#load();
    const conn = this.#servers.get(name);
    if (!conn) return;
    this.#servers.delete(name);
    await conn.close();
    this.#rebuild();
  }

  async callTool(name: string, argsJson: string, opts?: { signal?: AbortSignal }): Promise<ToolCallOutcome> {
    const t0 = performance.now();
    const tool = this.#registry.get(name);
    if (!tool) return this.#unknown(name, t0);
    const parsed = parseArguments(argsJson);
    if (!parsed.ok)
      return this.#finish(tool, t0, {
        ok: false,
        outcome: "bad_arguments",
        output: `The call to "${name}" was not made: ${parsed.error}.`,
      });
    const conn = this.#servers.get(tool.server);
    if (!conn) return this.#unknown(name, t0);
    const timeoutMs = Math.min(conn.config.timeout * 1000, this.#callTimeoutMs);
    const result = await conn.call(tool.tool, parsed.args, timeoutMs, opts?.signal);
    return this.#finish(tool, t0, result);
  }

  /**
   * Closes every server in parallel, bounded to a few seconds; no child process survives it.
   * Idempotent. Listeners fire once more with an empty tool list.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#loaded;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.#servers.values()].map((c) => c.close())),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_BOUND_MS);
      }),
    ]);
    clearTimeout(timer);
    this.#flushCalls();
    this.#rebuild();
  }

  /** Needs the connection code loaded (`#load`). */
  #register(cfg: McpServerConfig): ServerConnection {
    const metrics = this.#metrics;
    if (metrics) initialiseServerSeries(metrics, cfg.name, MODE);
    const m = this.#Connection;
    if (!m) throw new Error("the MCP connection code is not loaded yet");
    const conn = new m.ServerConnection({
      config: cfg,
      logger: this.#log.child({ server: cfg.name }),
      backoff: this.#backoff ?? DEFAULT_BACKOFF,
      clientInfo: this.#clientInfo,
      transportOptions: this.#transportOptions,
      ...(this.#healthCheckMs !== undefined ? { healthCheckMs: this.#healthCheckMs } : {}),
      onChange: () => {
        if (this.#servers.get(cfg.name) === conn) this.#rebuild();
        metrics?.mcpServerUp.set({ server: cfg.name, mode: MODE }, conn.isUp ? 1 : 0);
      },
      onRestart: () => metrics?.mcpServerRestarts.inc({ server: cfg.name }),
    });
    if (!cfg.enabled) void conn.disable();
    this.#servers.set(cfg.name, conn);
    return conn;
  }

  /** Rebuilds the registry from the servers that are up; notifies listeners if it changed. */
  #rebuild(): void {
    const entries = this.#closed
      ? []
      : [...this.#servers.values()]
          .filter((c) => c.isUp)
          .map((c) => ({
            server: c.name,
            priority: c.config.priority,
            ...(c.config.allowed_tools !== undefined ? { allowedTools: c.config.allowed_tools } : {}),
            tools: c.tools(),
          }));
    const registry = new ToolRegistry(entries);
    const fingerprint = JSON.stringify(registry.tools());
    this.#registry = registry;
    if (fingerprint === this.#fingerprint) return;
    this.#fingerprint = fingerprint;
    const metrics = this.#metrics;
    if (metrics) for (const t of registry.tools()) initialiseToolSeries(metrics, t.server, t.tool, MODE);
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch (err) {
        this.#log.error({ err }, "tools-changed listener failed");
      }
    }
  }

  /**
   * Queues one call for `tool_calls_total` / `tool_call_duration_seconds`; the queue is applied on
   * the next turn of the event loop, so label hashing stays off the caller's critical path. Series
   * lag a call by at most one tick. `seconds` null: no duration (the call was never routed).
   */
  #recordCall(
    server: string,
    tool: string,
    outcome: ToolCallOutcome["outcome"],
    seconds: number | null,
  ): void {
    this.#pendingCalls.push({ server, tool, outcome, seconds });
    if (this.#pendingCalls.length === 1) setImmediate(this.#flushCalls);
  }

  readonly #flushCalls = (): void => {
    const metrics = this.#metrics;
    const calls = this.#pendingCalls;
    this.#pendingCalls = [];
    if (!metrics) return;
    for (const c of calls) {
      metrics.toolCalls.inc({ server: c.server, tool: c.tool, mode: MODE, outcome: c.outcome });
      if (c.seconds !== null) metrics.toolCallDuration.observe({ server: c.server, mode: MODE }, c.seconds);
    }
  };

  #unknown(name: string, t0: number): ToolCallOutcome {
    const down = this.status().filter((s) => s.state !== "up" && s.enabled);
    const hint =
      down.length > 0
        ? ` Unavailable right now: ${down.map((s) => `"${s.name}" (${s.state})`).join(", ")}.`
        : "";
    if (this.#metrics) this.#recordCall("", "", "unknown_tool", null);
    return {
      ok: false,
      outcome: "unknown_tool",
      output: `There is no tool named "${name}".${hint}`,
      durationMs: performance.now() - t0,
    };
  }

  #finish(tool: RoutedTool, t0: number, result: CallResult): ToolCallOutcome {
    const durationMs = performance.now() - t0;
    if (this.#metrics) this.#recordCall(tool.server, tool.tool, result.outcome, durationMs / 1000);
    if (!result.ok)
      this.#log.info({ server: tool.server, tool: tool.tool, outcome: result.outcome }, "tool call failed");
    return {
      ok: result.ok,
      output: result.output,
      outcome: result.outcome,
      server: tool.server,
      tool: tool.tool,
      durationMs,
    };
  }
}
