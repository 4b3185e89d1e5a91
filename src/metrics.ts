/**
 * Every metric of the service, declared once on an injected Registry (DESIGN §7).
 * Names carry the `openvoice_` prefix, base units, `_total` for counters; labels stay low-cardinality.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Buckets for voice latency: 10 ms … 10 s. */
export const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];

const P = "openvoice_";

export function createMetrics(registry: Registry = new Registry(), opts: { defaults?: boolean } = {}) {
  if (opts.defaults ?? true) collectDefaultMetrics({ register: registry, prefix: P });
  const r = [registry];
  return {
    registry,
    satellitesConnected: new Gauge({
      name: `${P}satellites_connected`,
      help: "Satellites connected and past hello.",
      registers: r,
    }),
    conversationsActive: new Gauge({
      name: `${P}conversations_active`,
      help: "Conversations in progress.",
      registers: r,
    }),
    realtimeSessions: new Gauge({
      name: `${P}realtime_sessions`,
      help: "Realtime upstream sessions by state.",
      labelNames: ["state"] as const,
      registers: r,
    }),
    realtimeConnects: new Counter({
      name: `${P}realtime_connects_total`,
      help: "Realtime upstream connection attempts by outcome.",
      labelNames: ["outcome"] as const,
      registers: r,
    }),
    realtimeReconnects: new Counter({
      name: `${P}realtime_reconnects_total`,
      help: "Conversations carried over to a new upstream session after a drop.",
      registers: r,
    }),
    realtimeSessionRotations: new Counter({
      name: `${P}realtime_session_rotations_total`,
      help: "Upstream sessions replaced before their time limit.",
      registers: r,
    }),
    turnFirstAudio: new Histogram({
      name: `${P}turn_first_audio_seconds`,
      help: "End of user speech to the first reply audio frame sent to the satellite.",
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    toolCalls: new Counter({
      name: `${P}tool_calls_total`,
      help: "Tool calls by server, tool, mode and outcome.",
      labelNames: ["server", "tool", "mode", "outcome"] as const,
      registers: r,
    }),
    toolCallDuration: new Histogram({
      name: `${P}tool_call_duration_seconds`,
      help: "Tool call duration by server and mode.",
      labelNames: ["server", "mode"] as const,
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    mcpServerUp: new Gauge({
      name: `${P}mcp_server_up`,
      help: "1 when the MCP server is connected (client) or listed its tools (native).",
      labelNames: ["server", "mode"] as const,
      registers: r,
    }),
    mcpServerRestarts: new Counter({
      name: `${P}mcp_server_restarts_total`,
      help: "Reconnects of client MCP servers after a failure.",
      labelNames: ["server"] as const,
      registers: r,
    }),
    mcpFailovers: new Counter({
      name: `${P}mcp_failovers_total`,
      help: "Native servers moved to client mode after mcp_list_tools failed.",
      labelNames: ["server"] as const,
      registers: r,
    }),
    approvals: new Counter({
      name: `${P}approvals_total`,
      help: "Approval decisions by server, decision and source.",
      labelNames: ["server", "decision", "source"] as const,
      registers: r,
    }),
    approvalsPending: new Gauge({
      name: `${P}approvals_pending`,
      help: "Approvals waiting for a person.",
      registers: r,
    }),
    audioSeconds: new Counter({
      name: `${P}audio_seconds_total`,
      help: "Seconds of audio by direction (in: microphone to upstream, out: reply to satellite).",
      labelNames: ["direction"] as const,
      registers: r,
    }),
    tokens: new Counter({
      name: `${P}tokens_total`,
      help: "Tokens used, from response.done usage, by kind.",
      labelNames: ["kind"] as const,
      registers: r,
    }),
    errors: new Counter({
      name: `${P}errors_total`,
      help: "Errors by code (satellite protocol, upstream and internal codes).",
      labelNames: ["code"] as const,
      registers: r,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
