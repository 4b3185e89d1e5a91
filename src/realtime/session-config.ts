/**
 * `session.update` builder (pure). Native MCP servers become `type:"mcp"` entries, client tools become
 * `type:"function"` entries, both in the same session (DESIGN §2–3). The seed's per-tool approval map is
 * always converted to the API's object form.
 */
import type {
  RealtimeAudioInputTurnDetection,
  RealtimeFunctionTool,
  RealtimeSessionCreateRequest,
  RealtimeToolsConfigUnion,
  RealtimeTruncation,
  SessionUpdateEvent,
} from "openai/resources/realtime/realtime";
import { toApiRequireApproval } from "../approvals/policy.js";
import type { Config, McpServerConfig } from "../config/model.js";
import type { RoutedTool } from "../mcp/types.js";

export type TurnMode = "server_vad" | "client";

export interface SessionConfigInput {
  readonly openai: Config["openai"];
  /** `client`: no upstream turn detection; the front end commits turns. */
  readonly turn: TurnMode;
  /** Native servers to put in `tools` (already filtered: enabled, not failed over). */
  readonly native: readonly McpServerConfig[];
  /** Client tools, in the provider's order. */
  readonly functions: readonly RoutedTool[];
  /** A summary of earlier turns, appended to the instructions (reconnect/rotation). */
  readonly context?: string;
  /** With server turn detection: false ends turns without creating a response. Default true. */
  readonly createResponse?: boolean;
  /** `cost.context_tokens`: the most conversation tokens an answer re-reads; 0 or absent: the model's limit. */
  readonly contextTokens?: number;
}

/** Share of `contextTokens` kept when the conversation outgrows it (older turns go first). */
export const RETENTION_RATIO = 0.8;

/**
 * The GA `truncation` that bounds what each answer re-reads: past `contextTokens` conversation tokens
 * (after the instructions) the oldest turns are dropped down to `RETENTION_RATIO` of it, so the cached
 * prefix stays stable between truncations. Undefined (the API's `auto`) for 0.
 */
export function contextTruncation(contextTokens: number | undefined): RealtimeTruncation | undefined {
  if (!contextTokens) return undefined;
  return {
    type: "retention_ratio",
    retention_ratio: RETENTION_RATIO,
    token_limits: { post_instructions: contextTokens },
  };
}

export type McpToolEntry = RealtimeToolsConfigUnion.Mcp;

/**
 * The API takes a native server's `authorization` as a bare OAuth access token and adds the scheme
 * itself, while configs (and the seed's examples) often write the header value `Bearer <token>`:
 * a leading `Bearer ` (any case) is removed, anything else is sent as written.
 */
export function bareAccessToken(authorization: string): string {
  return authorization.replace(/^\s*bearer\s+/i, "").trim();
}

/** The `type:"mcp"` entry of one native server; `headers` are passed on exactly as configured. */
export function nativeMcpTool(server: McpServerConfig): McpToolEntry {
  if (server.server_url === undefined) throw new Error(`native server ${server.name} has no server_url`);
  const entry: McpToolEntry = {
    type: "mcp",
    server_label: server.name,
    server_url: server.server_url,
    require_approval: toApiRequireApproval(server.require_approval),
  };
  const token = server.authorization !== undefined ? bareAccessToken(server.authorization) : "";
  if (token !== "") entry.authorization = token;
  if (Object.keys(server.headers).length > 0) entry.headers = { ...server.headers };
  if (server.description !== undefined) entry.server_description = server.description;
  if (server.allowed_tools !== undefined) entry.allowed_tools = [...server.allowed_tools];
  return entry;
}

export function functionTool(tool: RoutedTool): RealtimeFunctionTool {
  return { type: "function", name: tool.name, description: tool.description, parameters: tool.parameters };
}

/** Every tool of the session: native entries first (config order), then function tools. */
export function sessionTools(
  native: readonly McpServerConfig[],
  functions: readonly RoutedTool[],
): RealtimeToolsConfigUnion[] {
  return [...native.map(nativeMcpTool), ...functions.map(functionTool)];
}

export function turnDetection(
  mode: TurnMode,
  kind: Config["openai"]["turn_detection"],
  createResponse = true,
): RealtimeAudioInputTurnDetection | null {
  if (mode === "client") return null;
  return kind === "semantic_vad"
    ? { type: "semantic_vad", create_response: createResponse, interrupt_response: true }
    : { type: "server_vad", create_response: createResponse, interrupt_response: true };
}

export function instructionsWithContext(base: string, context: string | undefined): string {
  if (!context) return base;
  return (
    `${base}\n\nThe connection was renewed in the middle of this conversation. ` +
    `What was said so far (most recent last):\n${context}\nContinue the conversation from there.`
  );
}

/** The full `session.update` for a new session. */
export function buildSessionUpdate(input: SessionConfigInput): SessionUpdateEvent {
  const session: RealtimeSessionCreateRequest = {
    type: "realtime",
    instructions: instructionsWithContext(input.openai.instructions, input.context),
    output_modalities: ["audio"],
    audio: {
      input: {
        format: { type: "audio/pcm", rate: 24000 },
        turn_detection: turnDetection(input.turn, input.openai.turn_detection, input.createResponse),
        transcription: { model: input.openai.transcription_model },
      },
      output: { format: { type: "audio/pcm", rate: 24000 }, voice: input.openai.voice },
    },
    tools: sessionTools(input.native, input.functions),
    tool_choice: "auto",
  };
  const truncation = contextTruncation(input.contextTokens);
  if (truncation) session.truncation = truncation;
  return { type: "session.update", session };
}

/** A `session.update` that changes only the tools (runtime enable/disable, tool list changes, failover). */
export function buildToolsUpdate(
  native: readonly McpServerConfig[],
  functions: readonly RoutedTool[],
): SessionUpdateEvent {
  return { type: "session.update", session: { type: "realtime", tools: sessionTools(native, functions) } };
}

export interface TranscriptTurn {
  readonly role: "user" | "assistant";
  readonly text: string;
}

/**
 * A compact summary of the most recent turns, newest last, at most `maxChars` characters
 * (older turns are dropped first; a single over-long turn is cut at the front).
 */
export function summariseTurns(turns: readonly TranscriptTurn[], maxChars = 1500): string {
  const lines: string[] = [];
  let used = 0;
  for (let i = turns.length - 1; i >= 0; i--) {
    const t = turns[i]!;
    const text = t.text.replace(/\s+/g, " ").trim();
    if (!text) continue;
    const prefix = t.role === "user" ? "User: " : "Assistant: ";
    let line = prefix + text;
    if (used + line.length + 1 > maxChars) {
      if (lines.length > 0) break;
      line = `${prefix}…${text.slice(-Math.max(1, maxChars - prefix.length - 1))}`;
    }
    lines.unshift(line);
    used += line.length + 1;
  }
  return lines.join("\n");
}
