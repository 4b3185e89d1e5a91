/**
 * Contract between the client MCP side and its consumers (realtime sessions, admin API).
 * `ClientMcpManager` implements `ToolProvider`.
 */

/** A client tool as the model sees it (a Realtime `type:"function"` tool) plus its route. */
export interface RoutedTool {
  /** Unique, `^[a-zA-Z0-9_-]{1,64}$`; the bare tool name or `<server>__<tool>`. */
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the arguments, as the server declared it (minus what Realtime rejects). */
  readonly parameters: Record<string, unknown>;
  /** Owning server (config name). */
  readonly server: string;
  /** Tool name on the owning server. */
  readonly tool: string;
}

/** Never a thrown error: failures come back as `ok:false` with text the model can speak about. */
export interface ToolCallOutcome {
  readonly ok: boolean;
  /** What goes into `function_call_output.output`. */
  readonly output: string;
  readonly server?: string;
  readonly tool?: string;
  readonly durationMs: number;
  /** `success` | `error` (isError result) | `timeout` | `crash` | `bad_arguments` | `unknown_tool` | `denied` */
  readonly outcome: "success" | "error" | "timeout" | "crash" | "bad_arguments" | "unknown_tool" | "denied";
}

export type ServerState = "connecting" | "up" | "down" | "disabled";

export interface ServerStatus {
  readonly name: string;
  readonly mode: "native" | "client";
  readonly transport?: "stdio" | "http" | "sse";
  readonly enabled: boolean;
  readonly state: ServerState;
  readonly toolCount: number;
  readonly lastError?: string;
  readonly restarts: number;
}

export interface ToolProvider {
  /** Current function tools, deterministic order (sorted by name). */
  tools(): readonly RoutedTool[];
  /**
   * Calls a tool by its exposed name with the model's raw JSON argument string.
   * Resolves within the server's timeout; never rejects.
   */
  callTool(name: string, argsJson: string, opts?: { signal?: AbortSignal }): Promise<ToolCallOutcome>;
  /** Called after the tool list changes (connect, list_changed, crash, enable/disable). Returns an unsubscribe. */
  onToolsChanged(listener: () => void): () => void;
  status(): readonly ServerStatus[];
}
