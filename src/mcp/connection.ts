/**
 * One client-mode MCP server: connect, list its tools (all pages), follow `tools/list_changed`,
 * call tools, notice a lost connection and reconnect with capped exponential backoff and jitter.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ErrorCode, McpError, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import type { McpServerConfig } from "../config/model.js";
import type { Logger } from "../log.js";
import { missingCommands } from "./command.js";
import { processTree, killSurvivors, type ProcessRef } from "./process-tree.js";
import type { ListedTool } from "./registry.js";
import { resultText } from "./result.js";
import { createTransport, type OpenedTransport, type TransportOptions } from "./transport.js";
import type { ServerStatus, ToolCallOutcome } from "./types.js";

export interface Backoff {
  /** First retry delay (before jitter). */
  readonly initialMs: number;
  /** Longest delay between retries. */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 1000, maxMs: 60_000 };

/** Pages of `tools/list` read at most (a server whose cursor never ends is cut off). */
const MAX_TOOL_PAGES = 100;
/** Time given to a graceful close (stdin end → SIGTERM → SIGKILL in the SDK) before survivors are killed. */
const CLOSE_GRACE_MS = 3500;
const DEFAULT_HEALTH_CHECK_MS = 30_000;
/** Coalesces bursts of `tools/list_changed`. */
const LIST_CHANGED_DEBOUNCE_MS = 25;

/**
 * Retry delay for the `attempt`-th consecutive failure (0-based): `initialMs · 2^attempt` capped at
 * `maxMs`, then "equal jitter": a uniformly random value in [delay/2, delay].
 */
export function backoffDelay(backoff: Backoff, attempt: number, random: () => number = Math.random): number {
  const exp = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(exp / 2 + random() * (exp / 2));
}

type ConnState =
  | { readonly status: "idle" }
  | {
      readonly status: "connecting";
      readonly gen: number;
      readonly opened: OpenedTransport;
      readonly client: Client;
    }
  | {
      readonly status: "up";
      readonly gen: number;
      readonly opened: OpenedTransport;
      readonly client: Client;
      readonly tools: readonly ListedTool[];
    }
  | { readonly status: "down"; readonly gen: number; readonly error: string }
  | { readonly status: "disabled" }
  | { readonly status: "closed" };

/** What a call produced, before the manager adds names, timing and metrics. */
export type CallResult = Pick<ToolCallOutcome, "ok" | "output" | "outcome">;

export interface ServerConnectionOptions {
  readonly config: McpServerConfig;
  readonly logger: Logger;
  readonly backoff: Backoff;
  readonly clientInfo: { readonly name: string; readonly version: string };
  /** Called after the state or the tool list changed (synchronously, from inside the connection). */
  readonly onChange: () => void;
  /** Called when a reconnect attempt starts after a failure. */
  readonly onRestart?: () => void;
  readonly transportOptions?: Omit<TransportOptions, "logger">;
  readonly random?: () => number;
  /**
   * While up, the server is pinged this often; a failed ping counts as a lost connection (an HTTP
   * server that went away while nobody called it). 0 turns it off. Default 30 s.
   */
  readonly healthCheckMs?: number;
}

/**
 * Lifecycle of one server. States: idle → connecting → up | down; down → (backoff) → connecting;
 * any → disabled (by `disable`) or closed (by `close`, final). A generation number tags every
 * connection; events from an older one (a late close, a late tool list) are dropped.
 */
export class ServerConnection {
  readonly config: McpServerConfig;
  readonly #log: Logger;
  readonly #opts: ServerConnectionOptions;
  #state: ConnState = { status: "idle" };
  #gen = 0;
  #failures = 0;
  #restarts = 0;
  #lastError: string | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  #firstAttempt: Promise<void> | undefined;

  constructor(opts: ServerConnectionOptions) {
    this.config = opts.config;
    this.#opts = opts;
    this.#log = opts.logger;
  }

  get name(): string {
    return this.config.name;
  }

  /** Tools while up; empty otherwise. */
  tools(): readonly ListedTool[] {
    return this.#state.status === "up" ? this.#state.tools : [];
  }

  get isUp(): boolean {
    return this.#state.status === "up";
  }

  /** Pid of the stdio child, while one runs. */
  pid(): number | null {
    const s = this.#state;
    return s.status === "up" || s.status === "connecting" ? s.opened.pid() : null;
  }

  status(): ServerStatus {
    const s = this.#state;
    const state: ServerStatus["state"] =
      s.status === "up"
        ? "up"
        : s.status === "disabled" || s.status === "closed"
          ? "disabled"
          : s.status === "down"
            ? "down"
            : "connecting";
    return {
      name: this.config.name,
      mode: "client",
      ...(this.config.transport !== undefined ? { transport: this.config.transport } : {}),
      enabled: s.status !== "disabled",
      state,
      toolCount: this.tools().length,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
      restarts: this.#restarts,
    };
  }

  /**
   * Starts connecting (idempotent while connecting or up). Resolves when the first attempt has
   * ended, up or down, within the server's `timeout` plus the time to close a failed attempt.
   * Never rejects.
   */
  start(): Promise<void> {
    const s = this.#state.status;
    if (s === "closed") return Promise.resolve();
    if (s === "connecting" || s === "up") return this.#firstAttempt ?? Promise.resolve();
    this.#clearRetry();
    this.#failures = 0;
    this.#firstAttempt = this.#attempt();
    return this.#firstAttempt;
  }

  /** Closes the connection and keeps it closed until `start`. Its tools disappear at once. */
  async disable(): Promise<void> {
    if (this.#state.status === "closed" || this.#state.status === "disabled") return;
    await this.#shutdown({ status: "disabled" });
  }

  /** Final: closes the connection, stops retries, makes sure no child process survives. Bounded. */
  async close(): Promise<void> {
    if (this.#state.status === "closed") return;
    await this.#shutdown({ status: "closed" });
  }

  /**
   * Calls `tool` with `args`. Resolves within `timeoutMs` (the SDK's request timeout); never rejects.
   * A lost connection during the call answers `crash` and starts a reconnect.
   */
  async call(
    tool: string,
    args: Record<string, unknown>,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<CallResult> {
    const s = this.#state;
    if (s.status !== "up") {
      const why = this.#lastError !== undefined ? `: ${this.#lastError}` : "";
      return { ok: false, outcome: "crash", output: `The server "${this.name}" is not connected${why}.` };
    }
    try {
      // The SDK's request timeout starts before the request is written, so it also bounds a
      // transport that never accepts the write.
      const result = await s.client.callTool(
        { name: tool, arguments: args },
        undefined,
        signal !== undefined ? { timeout: timeoutMs, signal } : { timeout: timeoutMs },
      );
      const text = resultText(result);
      return result.isError === true
        ? { ok: false, outcome: "error", output: `The tool "${tool}" failed: ${stripMcpPrefix(text)}` }
        : { ok: true, outcome: "success", output: text };
    } catch (err) {
      return signal?.aborted === true
        ? { ok: false, outcome: "error", output: `The call to "${tool}" was cancelled.` }
        : this.#callFailure(s.gen, tool, timeoutMs, err);
    }
  }

  #timeoutResult(tool: string, timeoutMs: number): CallResult {
    return {
      ok: false,
      outcome: "timeout",
      output: `The tool "${tool}" did not answer within ${formatSeconds(timeoutMs)} and was cancelled.`,
    };
  }

  #callFailure(gen: number, tool: string, timeoutMs: number, err: unknown): CallResult {
    if (err instanceof McpError) {
      if (err.code === Number(ErrorCode.RequestTimeout)) return this.#timeoutResult(tool, timeoutMs);
      if (err.code === Number(ErrorCode.ConnectionClosed)) {
        this.#lost(gen, "connection closed during a call");
        return {
          ok: false,
          outcome: "crash",
          output: `The server "${this.name}" stopped while running "${tool}"; it is being restarted.`,
        };
      }
      return {
        ok: false,
        outcome: "error",
        output: `The tool "${tool}" failed: ${stripMcpPrefix(err.message)}`,
      };
    }
    // Anything else is the wire failing (fetch error, unknown session, broken pipe).
    const message = errorText(err);
    this.#lost(gen, message);
    return {
      ok: false,
      outcome: "crash",
      output: `The server "${this.name}" could not be reached (${message}); it is being reconnected.`,
    };
  }

  async #attempt(): Promise<void> {
    const gen = ++this.#gen;
    const cfg = this.config;
    const timeoutMs = cfg.timeout * 1000;
    const missing = this.#missingCommand();
    if (missing !== undefined) {
      this.#fail(gen, missing, { retry: false });
      return;
    }
    let opened: OpenedTransport;
    try {
      opened = createTransport(cfg, { ...this.#opts.transportOptions, logger: this.#log });
    } catch (err) {
      this.#fail(gen, errorText(err));
      return;
    }
    const client = new Client(
      { name: this.#opts.clientInfo.name, version: this.#opts.clientInfo.version },
      { capabilities: {} },
    );
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      this.#scheduleRefresh(gen);
    });
    client.onclose = () => {
      const tail = opened.stderrTail();
      this.#lost(gen, `connection closed${tail !== "" ? ` (${tail})` : ""}`);
    };
    client.onerror = (err: Error) => {
      this.#log.debug({ err: err.message }, "transport error");
      // An SSE stream that breaks ends the server's session: nothing sent after it is answered.
      if (opened.kind === "sse" && err.name === "SseError")
        this.#lost(gen, `SSE stream lost: ${err.message}`);
    };
    this.#state = { status: "connecting", gen, opened, client };
    this.#opts.onChange();

    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${formatSeconds(timeoutMs)}`)), timeoutMs);
    });
    try {
      const tools = await Promise.race([
        (async () => {
          await client.connect(opened.transport, { timeout: timeoutMs });
          return listAllTools(client, timeoutMs);
        })(),
        deadline,
      ]);
      if (gen !== this.#gen) return;
      this.#state = { status: "up", gen, opened, client, tools };
      this.#failures = 0;
      this.#lastError = undefined;
      this.#log.info({ tools: tools.length, transport: cfg.transport }, "MCP server connected");
      this.#startHealthCheck(gen, client);
      this.#opts.onChange();
    } catch (err) {
      if (gen !== this.#gen) return;
      const tail = opened.stderrTail();
      const message = `${errorText(err)}${tail !== "" ? ` (${tail})` : ""}`;
      await closeBounded(client, opened);
      this.#fail(gen, message);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Why a stdio server cannot be started at all (its command is not there), or `undefined`. Such a
   * server is not retried: a restart cannot install the command.
   */
  #missingCommand(): string | undefined {
    const parentEnv = this.#opts.transportOptions?.parentEnv ?? process.env;
    const addon = (parentEnv.SUPERVISOR_TOKEN ?? "") !== "";
    return missingCommands([this.config], parentEnv, addon)[0]?.message;
  }

  /**
   * The attempt `gen` failed before the server came up. It is retried with backoff unless
   * `retry` is false (it stays down until `start` is called again).
   */
  #fail(gen: number, message: string, { retry } = { retry: true }): void {
    if (gen !== this.#gen) return;
    this.#lastError = message;
    this.#state = { status: "down", gen, error: message };
    this.#log.warn({ err: message }, retry ? "MCP server unavailable" : "MCP server cannot start");
    this.#opts.onChange();
    if (retry) this.#scheduleRetry();
  }

  /** The connection `gen` was up (or connecting) and is gone. Idempotent per generation. */
  #lost(gen: number, message: string): void {
    const s = this.#state;
    // While connecting, the attempt itself reports the failure.
    if (gen !== this.#gen || s.status !== "up") return;
    this.#gen++;
    this.#stopHealthCheck();
    this.#lastError = message;
    this.#state = { status: "down", gen: this.#gen, error: message };
    this.#log.warn({ err: message }, "MCP server connection lost");
    this.#opts.onChange();
    void closeBounded(s.client, s.opened);
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    this.#clearRetry();
    const delay = backoffDelay(this.#opts.backoff, this.#failures++, this.#opts.random);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#state.status !== "down") return;
      this.#restarts++;
      this.#opts.onRestart?.();
      this.#log.info({ attempt: this.#failures }, "reconnecting MCP server");
      void this.#attempt();
    }, delay);
    this.#retryTimer.unref();
  }

  #startHealthCheck(gen: number, client: Client): void {
    this.#stopHealthCheck();
    const every = this.#opts.healthCheckMs ?? DEFAULT_HEALTH_CHECK_MS;
    if (every <= 0) return;
    const timeout = Math.min(this.config.timeout * 1000, every, 10_000);
    let inFlight = false;
    this.#healthTimer = setInterval(() => {
      if (inFlight || gen !== this.#gen) return;
      inFlight = true;
      client.ping({ timeout }).then(
        () => {
          inFlight = false;
        },
        (err: unknown) => {
          inFlight = false;
          // A server without ping support is still a working server.
          if (err instanceof McpError && err.code === Number(ErrorCode.MethodNotFound)) return;
          this.#lost(gen, `health check failed: ${errorText(err)}`);
        },
      );
    }, every);
    this.#healthTimer.unref();
  }

  #stopHealthCheck(): void {
    if (this.#healthTimer !== undefined) clearInterval(this.#healthTimer);
    this.#healthTimer = undefined;
  }

  #clearRetry(): void {
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  #scheduleRefresh(gen: number): void {
    if (this.#refreshTimer !== undefined) return;
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = undefined;
      void this.#refresh(gen);
    }, LIST_CHANGED_DEBOUNCE_MS);
    this.#refreshTimer.unref();
  }

  /** Re-reads the tool list after `tools/list_changed`. A failed read keeps the old list. */
  async #refresh(gen: number): Promise<void> {
    const s = this.#state;
    if (gen !== this.#gen || s.status !== "up") return;
    try {
      const tools = await listAllTools(s.client, this.config.timeout * 1000);
      const now = this.#state;
      if (gen !== this.#gen || now.status !== "up") return;
      this.#state = { ...now, tools };
      this.#log.info({ tools: tools.length }, "MCP server tool list changed");
      this.#opts.onChange();
    } catch (err) {
      this.#log.warn({ err: errorText(err) }, "could not refresh the tool list");
    }
  }

  async #shutdown(next: { status: "disabled" } | { status: "closed" }): Promise<void> {
    const s = this.#state;
    this.#gen++;
    this.#clearRetry();
    this.#stopHealthCheck();
    if (this.#refreshTimer !== undefined) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    this.#state = next;
    this.#opts.onChange();
    if (s.status === "up" || s.status === "connecting") await closeBounded(s.client, s.opened);
  }
}

/** Reads every page of `tools/list`; each page is bounded by `timeoutMs`. */
export async function listAllTools(client: Client, timeoutMs: number): Promise<ListedTool[]> {
  const tools: ListedTool[] = [];
  const cursors = new Set<string>();
  let cursor: string | undefined;
  for (let page = 0; page < MAX_TOOL_PAGES; page++) {
    const result = await client.listTools(cursor !== undefined ? { cursor } : undefined, {
      timeout: timeoutMs,
    });
    tools.push(...result.tools);
    cursor = result.nextCursor;
    if (cursor === undefined || cursors.has(cursor)) break;
    cursors.add(cursor);
  }
  return tools;
}

/**
 * Closes a client and its transport; a stdio child that ignores stdin end and SIGTERM, and any
 * process it started, is killed once the grace time is over. Never rejects.
 */
async function closeBounded(client: Client, opened: OpenedTransport): Promise<void> {
  const pid = opened.pid();
  const tree: ProcessRef[] = pid !== null ? processTree(pid) : [];
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, CLOSE_GRACE_MS);
  });
  await Promise.race([
    (async () => {
      await Promise.race([opened.terminate(), delay(1000)]);
      await client.close();
    })().catch(() => undefined),
    grace,
  ]);
  clearTimeout(timer);
  killSurvivors(tree);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

/** `MCP error -32602: msg` → `msg` (the prefix may be repeated when it crossed the wire). */
function stripMcpPrefix(message: string): string {
  return message.replace(/^(?:MCP error -?\d+: )+/, "");
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    const causeText = cause instanceof Error && cause.message !== err.message ? `: ${cause.message}` : "";
    return `${stripMcpPrefix(err.message)}${causeText}`;
  }
  return String(err);
}
