/**
 * The one place that builds MCP SDK client transports from a server's config (stdio child process,
 * Streamable HTTP, SSE). Everything above it sees only the SDK's `Transport` interface.
 */
import type { Readable } from "node:stream";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { McpServerConfig } from "../config/model.js";
import type { Logger } from "../log.js";
import { childEnvironment } from "./env.js";

export type TransportKind = "stdio" | "http" | "sse";

/** Lines of a child's stderr kept for error messages. */
const STDERR_TAIL_LINES = 5;
const STDERR_LINE_MAX = 300;

/** A transport plus what the connection needs to know about what is behind it. */
export interface OpenedTransport {
  readonly kind: TransportKind;
  readonly transport: Transport;
  /** Pid of the stdio child while it runs; null otherwise. */
  pid(): number | null;
  /** The last few stderr lines of a stdio child (empty for HTTP/SSE). */
  stderrTail(): string;
  /**
   * Ends the remote session politely when the transport has one (Streamable HTTP: DELETE).
   * Best effort, never rejects; the caller bounds it.
   */
  terminate(): Promise<void>;
}

export interface TransportOptions {
  /** Child logger of the server; stderr lines of a stdio child are logged at debug. */
  readonly logger: Logger;
  /** Environment the stdio allow-list reads from. Default `process.env`. */
  readonly parentEnv?: NodeJS.ProcessEnv;
}

/** Headers for HTTP/SSE: the configured ones plus `Authorization` when set. */
export function requestHeaders(cfg: McpServerConfig): Record<string, string> {
  const headers: Record<string, string> = { ...cfg.headers };
  if (cfg.authorization !== undefined) headers.Authorization = cfg.authorization;
  return headers;
}

/**
 * Creates (does not start) the transport for a client-mode server. Throws when the config lacks
 * what its transport needs (the config model already rejects such configs).
 */
export function createTransport(cfg: McpServerConfig, opts: TransportOptions): OpenedTransport {
  switch (cfg.transport) {
    case "stdio":
      return stdioTransport(cfg, opts);
    case "http": {
      const transport = new StreamableHTTPClientTransport(new URL(requireUrl(cfg)), {
        requestInit: { headers: requestHeaders(cfg) },
      });
      return {
        kind: "http",
        transport,
        pid: () => null,
        stderrTail: () => "",
        terminate: () => transport.terminateSession().catch(() => undefined),
      };
    }
    case "sse": {
      const transport = new SSEClientTransport(new URL(requireUrl(cfg)), {
        requestInit: { headers: requestHeaders(cfg) },
      });
      return {
        kind: "sse",
        transport,
        pid: () => null,
        stderrTail: () => "",
        terminate: () => Promise.resolve(),
      };
    }
    case undefined:
      throw new Error(`server "${cfg.name}" has no transport`);
  }
}

function requireUrl(cfg: McpServerConfig): string {
  if (cfg.server_url === undefined) throw new Error(`server "${cfg.name}" has no server_url`);
  return cfg.server_url;
}

function stdioTransport(cfg: McpServerConfig, opts: TransportOptions): OpenedTransport {
  if (cfg.command === undefined) throw new Error(`server "${cfg.name}" has no command`);
  const transport = new StdioClientTransport({
    command: cfg.command,
    args: cfg.args,
    env: childEnvironment(cfg.env, opts.parentEnv),
    ...(cfg.cwd !== undefined ? { cwd: cfg.cwd } : {}),
    stderr: "pipe",
  });
  const tail: string[] = [];
  let partial = "";
  const stderr = transport.stderr as Readable | null;
  stderr?.setEncoding("utf8");
  stderr?.on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = (lines.pop() ?? "").slice(-STDERR_LINE_MAX);
    for (const raw of lines) {
      const line = raw.trimEnd().slice(0, STDERR_LINE_MAX);
      if (line === "") continue;
      opts.logger.debug({ stderr: line }, "server stderr");
      tail.push(line);
      if (tail.length > STDERR_TAIL_LINES) tail.shift();
    }
  });
  return {
    kind: "stdio",
    transport,
    pid: () => transport.pid,
    stderrTail: () => [...tail, partial.trim()].filter((l) => l !== "").join(" | "),
    terminate: () => Promise.resolve(),
  };
}
