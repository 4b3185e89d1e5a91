/**
 * One client-mode MCP server: connect, list its tools (all pages), follow `tools/list_changed`,
 * call tools, notice a lost connection and reconnect with capped exponential backoff and jitter.
 */
import { performance } from "node:perf_hooks";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ErrorCode, McpError, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import type { McpServerConfig } from "../config/model.js";
import type { Logger } from "../log.js";
import { backoffDelay, type Backoff } from "./backoff.js";
import {
  closeBounded,
  errorText,
  isSessionNotFound,
  LazyOutputValidator,
  listAllTools,
  stripMcpPrefix,
} from "./client-session.js";
import { afterWaitingIo } from "../turns.js";
import { missingCommands } from "./command.js";
import type { ListedTool } from "./registry.js";
import { resultText } from "./result.js";
import { createTransport, type OpenedTransport, type TransportOptions } from "./transport.js";
import type { ServerStatus, ToolCallOutcome } from "./types.js";

const DEFAULT_HEALTH_CHECK_MS = 30_000;
/** Coalesces bursts of `tools/list_changed`. */
const LIST_CHANGED_DEBOUNCE_MS = 25;

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

type UpState = Extract<ConnState, { status: "up" }>;

/** One transport and the SDK client on it: one session with the server. */
interface Link {
  readonly opened: OpenedTransport;
  readonly client: Client;
}

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
  /** A session renewal in progress, for the connection generation whose session expired. */
  #renewal: { readonly from: number; readonly done: Promise<boolean> } | undefined;

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
   * Calls `tool` with `args`. Resolves within about `timeoutMs` (the SDK's request timeout); never
   * rejects. A lost connection during the call answers `crash` and starts a reconnect. A Streamable
   * HTTP server that answers 404 for our session (it expired) gets a new session and the call is
   * retried once, within what is left of `timeoutMs`.
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
    const deadline = performance.now() + timeoutMs;
    const first = await this.#callOn(s, tool, args, timeoutMs, signal);
    if (!("expired" in first)) return first;
    const renewed = await raceDeadline(this.#renewSession(s.gen), deadline);
    if (signal?.aborted === true) return cancelledResult(tool);
    if (renewed === "late") return this.#timeoutResult(tool, timeoutMs);
    const now = this.#state;
    if (!renewed || now.status !== "up") return this.#callFailure(s.gen, tool, timeoutMs, first.expired);
    const second = await this.#callOn(now, tool, args, Math.max(1, deadline - performance.now()), signal);
    if (!("expired" in second)) return second;
    return this.#callFailure(now.gen, tool, timeoutMs, second.expired);
  }

  /** One call on one session; `expired` when the server no longer knows that session (HTTP 404). */
  async #callOn(
    s: UpState,
    tool: string,
    args: Record<string, unknown>,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<CallResult | { readonly expired: unknown }> {
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
      if (signal?.aborted === true) return cancelledResult(tool);
      if (s.opened.kind === "http" && isSessionNotFound(err)) return { expired: err };
      return this.#callFailure(s.gen, tool, timeoutMs, err);
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
    const missing = this.#missingCommand();
    if (missing !== undefined) {
      this.#fail(gen, missing, { retry: false });
      return;
    }
    let link: Link;
    try {
      link = this.#createLink(gen);
    } catch (err) {
      this.#fail(gen, errorText(err));
      return;
    }
    const { opened, client } = link;
    this.#state = { status: "connecting", gen, opened, client };
    this.#opts.onChange();
    try {
      // The first request of an HTTP server loads Node's fetch (undici: about 13 ms of CPU).
      await afterWaitingIo();
      if (gen !== this.#gen) return;
      const tools = await this.#handshake(link);
      if (gen !== this.#gen) return;
      this.#state = { status: "up", gen, opened, client, tools };
      this.#failures = 0;
      this.#lastError = undefined;
      this.#log.info({ tools: tools.length, transport: this.config.transport }, "MCP server connected");
      this.#startHealthCheck(gen, client);
      this.#opts.onChange();
    } catch (err) {
      if (gen !== this.#gen) return;
      this.#fail(gen, errorText(err));
    }
  }

  /** A new transport and client tagged with `gen`; nothing is sent yet. Throws for a config it cannot use. */
  #createLink(gen: number): Link {
    const opened = createTransport(this.config, { ...this.#opts.transportOptions, logger: this.#log });
    const client = new Client(
      { name: this.#opts.clientInfo.name, version: this.#opts.clientInfo.version },
      { capabilities: {}, jsonSchemaValidator: new LazyOutputValidator() },
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
    return { opened, client };
  }

  /**
   * `initialize` and every page of `tools/list`, within the server's `timeout`. On failure the
   * link is closed and the error (with a stdio child's last stderr lines) is thrown.
   */
  async #handshake({ opened, client }: Link): Promise<readonly ListedTool[]> {
    const timeoutMs = this.config.timeout * 1000;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${formatSeconds(timeoutMs)}`)), timeoutMs);
    });
    try {
      return await Promise.race([
        (async () => {
          await client.connect(opened.transport, { timeout: timeoutMs });
          return listAllTools(client, timeoutMs);
        })(),
        deadline,
      ]);
    } catch (err) {
      const tail = opened.stderrTail();
      await closeBounded(client, opened);
      throw new Error(`${errorText(err)}${tail !== "" ? ` (${tail})` : ""}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The server answered 404 for our `Mcp-Session-Id` on connection `gen`: it forgot the session
   * (restart, idle expiry). Opens a new session on a new link and swaps it in while the server
   * stays `up`, so the tool list does not disappear and come back; listeners hear of a change only
   * when the new session lists different tools. Concurrent callers share one renewal. Resolves
   * true when the new session is up; false when `gen` is no longer current or the renewal failed
   * (then the server goes `down` and is reconnected with backoff).
   */
  #renewSession(gen: number): Promise<boolean> {
    if (this.#renewal?.from === gen) return this.#renewal.done;
    const s = this.#upState(gen);
    if (s === undefined) return Promise.resolve(false);
    const next = ++this.#gen;
    this.#stopHealthCheck();
    this.#log.info("MCP server forgot our session; opening a new one");
    const done = (async (): Promise<boolean> => {
      let link: Link;
      try {
        link = this.#createLink(next);
      } catch (err) {
        return this.#renewalFailed(s, next, errorText(err));
      }
      try {
        const tools = await this.#handshake(link);
        if (next !== this.#gen) {
          void closeBounded(link.client, link.opened);
          return false;
        }
        const changed = JSON.stringify(tools) !== JSON.stringify(s.tools);
        this.#state = { status: "up", gen: next, ...link, tools: changed ? tools : s.tools };
        this.#startHealthCheck(next, link.client);
        void closeBounded(s.client, s.opened);
        if (changed) {
          this.#log.info({ tools: tools.length }, "MCP server tool list changed in the new session");
          this.#opts.onChange();
        }
        return true;
      } catch (err) {
        return this.#renewalFailed(s, next, errorText(err));
      }
    })();
    this.#renewal = { from: gen, done };
    void done.finally(() => {
      if (this.#renewal?.done === done) this.#renewal = undefined;
    });
    return done;
  }

  #renewalFailed(old: UpState, next: number, message: string): false {
    void closeBounded(old.client, old.opened);
    if (next !== this.#gen) return false;
    this.#fail(next, `session expired and a new one failed: ${message}`);
    return false;
  }

  /** The up state of connection `gen`, if `gen` is current and up (not while its session is renewed). */
  #upState(gen: number): UpState | undefined {
    const s = this.#state;
    return gen === this.#gen && s.status === "up" && s.gen === gen ? s : undefined;
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
    // While connecting (or renewing its session), the attempt itself reports the failure.
    const s = this.#upState(gen);
    if (s === undefined) return;
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
          if (isSessionNotFound(err)) {
            void this.#renewSession(gen);
            return;
          }
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
    const s = this.#upState(gen);
    if (s === undefined) return;
    try {
      const tools = await listAllTools(s.client, this.config.timeout * 1000);
      const now = this.#upState(gen);
      if (now === undefined) return;
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

function cancelledResult(tool: string): CallResult {
  return { ok: false, outcome: "error", output: `The call to "${tool}" was cancelled.` };
}

/** `work`'s value, or `"late"` when `deadline` (a `performance.now()` time) passes first. */
async function raceDeadline<T>(work: Promise<T>, deadline: number): Promise<T | "late"> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), Math.max(0, deadline - performance.now()));
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}
