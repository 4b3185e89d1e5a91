/**
 * Every metric of the service, declared once on an injected Registry (DESIGN §7).
 * Names carry the `openvoice_` prefix, base units, `_total` for counters; labels stay low-cardinality
 * (server, tool, mode, outcome, state, code — never free text). The output passes
 * `promtool check metrics` with no findings, Node.js process metrics included.
 */
import type { EventEmitter } from "node:events";
import type { RealtimeResponseUsage } from "openai/resources/realtime/realtime";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ApprovalQueueEvents } from "./approvals/queue.js";
import { DIALECTS } from "./config/model.js";
import { responseTokens } from "./cost/prices.js";
import { SATELLITE_ERRORS } from "./errors.js";
import type { ToolCallOutcome } from "./mcp/types.js";

/** Buckets for voice latency: 10 ms … 10 s. */
export const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];

/**
 * `tokens_total{kind}` values. `input_text`/`input_audio`/`input_image` count uncached input only,
 * `input_cached` counts cached input of every modality, so the kinds add up to the response's
 * `input_tokens + output_tokens` and each kind has one price.
 */
export const TOKEN_KINDS = [
  "input_text",
  "input_audio",
  "input_image",
  "input_cached",
  "output_text",
  "output_audio",
] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** `audio_seconds_total{direction}`: `in` microphone → upstream, `out` reply → satellite. */
export const AUDIO_DIRECTIONS = ["in", "out"] as const;
export type AudioDirection = (typeof AUDIO_DIRECTIONS)[number];

/**
 * One labelled series of a counter, for a per-frame path: `inc` adds to a plain number that the
 * counter takes in whenever it is read (a scrape, `get()`), so a frame hashes no labels (prom-client's
 * own `labels()` child hashes them again on every `inc`). Bind it once, where the path is set up.
 */
export interface FrameCounter {
  inc(value: number): void;
}

/** `satellites_by_dialect{dialect}`: protocol v1 and every firmware dialect. */
export const WIRE_DIALECTS = ["v1", ...DIALECTS] as const;

/** `tool_calls_total{outcome}` values: the outcomes of a tool call. */
export const TOOL_CALL_OUTCOMES = [
  "success",
  "error",
  "timeout",
  "crash",
  "bad_arguments",
  "unknown_tool",
  "denied",
] as const satisfies readonly ToolCallOutcome["outcome"][];

/** `approvals_total{decision}` values. */
export type ApprovalDecisionLabel = "approved" | "denied";

export type ToolMode = "native" | "client";

const P = "openvoice_";

export interface MetricsOptions {
  /** Node.js process metrics (`openvoice_process_*`, `openvoice_nodejs_*`). Default true. */
  readonly defaults?: boolean;
  /** Sets `openvoice_build_info{version} 1` when given. */
  readonly version?: string;
}

/**
 * Declares every metric on `registry`. Call once per registry (prom-client rejects a second
 * registration of a name). Label sets whose values are known up front (token kinds, audio
 * directions, satellite error codes) start at 0 so rates and dashboards see them from the first scrape.
 */
export function createMetrics(registry: Registry = new Registry(), opts: MetricsOptions = {}) {
  if (opts.defaults ?? true) collectProcessMetrics(registry);
  const r = [registry];
  /** Audio seconds counted by the frame counters and not yet taken into `audio_seconds_total`. */
  const audioPending: Record<AudioDirection, number> = { in: 0, out: 0 };
  const metrics = {
    registry,
    buildInfo: new Gauge({
      name: `${P}build_info`,
      help: "Always 1; the version label names the running release.",
      labelNames: ["version"] as const,
      registers: r,
    }),
    satellitesConnected: new Gauge({
      name: `${P}satellites_connected`,
      help: "Satellites connected and past hello.",
      registers: r,
    }),
    satellitesByDialect: new Gauge({
      name: `${P}satellites_by_dialect`,
      help: "Satellites connected and past their handshake, by wire dialect (v1 or a firmware's).",
      labelNames: ["dialect"] as const,
      registers: r,
    }),
    dialectRefusals: new Counter({
      name: `${P}dialect_refusals_total`,
      help: "Firmware connections refused before the upgrade, by dialect and HTTP status code.",
      labelNames: ["dialect", "code"] as const,
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
      help: "End of user speech (speech_stopped or turn.end) to the first reply audio frame sent to the satellite.",
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    esphomeConnected: new Gauge({
      name: `${P}esphome_connected`,
      help: "ESPHome voice devices: 1 while the API connection is up, by device.",
      labelNames: ["device"] as const,
      registers: r,
    }),
    esphomeTurns: new Counter({
      name: `${P}esphome_turns_total`,
      help: "Voice runs of ESPHome devices by device and outcome (answered, stopped, error, aborted).",
      labelNames: ["device", "outcome"] as const,
      registers: r,
    }),
    esphomeFirstAudio: new Histogram({
      name: `${P}esphome_first_audio_seconds`,
      help: "ESPHome voice runs: end of user speech to the first reply audio written to the device's reply stream.",
      labelNames: ["device"] as const,
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    esphomeAnnouncements: new Counter({
      name: `${P}esphome_announcements_total`,
      help: "Announcements spoken on ESPHome devices by device and outcome (played, failed).",
      labelNames: ["device", "outcome"] as const,
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
      help: "Approval decisions by server, decision (approved, denied) and source.",
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
      collect() {
        for (const direction of AUDIO_DIRECTIONS) {
          const seconds = audioPending[direction];
          if (seconds === 0) continue;
          audioPending[direction] = 0;
          this.inc({ direction }, seconds);
        }
      },
    }),
    /** `audio_seconds_total{direction}` for the frame paths (see {@link FrameCounter}). */
    audioSecondsBy: {
      in: { inc: (seconds) => void (audioPending.in += seconds) },
      out: { inc: (seconds) => void (audioPending.out += seconds) },
    } satisfies Record<AudioDirection, FrameCounter>,
    tokens: new Counter({
      name: `${P}tokens_total`,
      help: "Tokens used, from response.done usage, by kind (input_* uncached, input_cached, output_*).",
      labelNames: ["kind"] as const,
      registers: r,
    }),
    costUsd: new Counter({
      name: `${P}cost_usd_total`,
      help: "Spend in US dollars at the configured prices, by device and route (v1, dialect, wyoming, esphome, talk).",
      labelNames: ["device", "route"] as const,
      registers: r,
    }),
    budgetUsd: new Gauge({
      name: `${P}budget_usd`,
      help: "Today's voice budget for all devices in US dollars, with what was allowed more today; 0 without one.",
      registers: r,
    }),
    budgetSpentRatio: new Gauge({
      name: `${P}budget_spent_ratio`,
      help: "Today's spend over today's budget (1 = used up); 0 without a budget.",
      registers: r,
    }),
    budgetWarn: new Gauge({
      name: `${P}budget_warn`,
      help: "1 when today's spend reached cost.warn_percent of the budget.",
      registers: r,
    }),
    errors: new Counter({
      name: `${P}errors_total`,
      help: "Errors by code (satellite protocol, upstream and internal codes).",
      labelNames: ["code"] as const,
      registers: r,
    }),
    wyomingRequests: new Counter({
      name: `${P}wyoming_requests_total`,
      help: "Wyoming program calls by program (asr, handle, tts) and outcome.",
      labelNames: ["program", "outcome"] as const,
      registers: r,
    }),
    wyomingStageSeconds: new Histogram({
      name: `${P}wyoming_stage_seconds`,
      help: "Wyoming latency by stage: transcript (end of speech to transcript), handled (transcript to handled), first_audio (synthesize to first audio-chunk).",
      labelNames: ["stage"] as const,
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    wyomingConnections: new Gauge({
      name: `${P}wyoming_connections`,
      help: "Open Wyoming TCP connections.",
      registers: r,
    }),
  };
  if (opts.version !== undefined) metrics.buildInfo.set({ version: opts.version }, 1);
  for (const kind of TOKEN_KINDS) metrics.tokens.inc({ kind }, 0);
  for (const direction of AUDIO_DIRECTIONS) metrics.audioSeconds.inc({ direction }, 0);
  for (const code of Object.keys(SATELLITE_ERRORS)) metrics.errors.inc({ code }, 0);
  for (const dialect of WIRE_DIALECTS) metrics.satellitesByDialect.set({ dialect }, 0);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * prom-client's default process metrics, minus the gauges it names `*_total`
 * (`nodejs_active_{handles,requests,resources}_total`), which `promtool check metrics` rejects:
 * their labelled siblings (`nodejs_active_handles{type}` …) remain, and `sum()` over them gives the total.
 */
function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, prefix: P });
  for (const metric of registry.getMetricsAsArray()) {
    if (metric instanceof Gauge && metric.name.endsWith("_total")) registry.removeSingleMetric(metric.name);
  }
}

/**
 * Adds one `response.done` usage to `tokens_total` and returns what was added per kind.
 * Cached tokens are a subset of input tokens: they are taken out of their modality (by
 * `cached_tokens_details`, or text first, then audio, then image when the details are missing) and
 * counted as `input_cached`. Tokens a side's total has beyond its breakdown count as text.
 */
export function recordTokenUsage(metrics: Metrics, usage: RealtimeResponseUsage): Record<TokenKind, number> {
  const t = responseTokens(usage);
  const added: Record<TokenKind, number> = {
    input_text: t.input_text,
    input_audio: t.input_audio,
    input_image: t.input_image,
    input_cached: t.cached_text + t.cached_audio + t.cached_image,
    output_text: t.output_text,
    output_audio: t.output_audio,
  };
  for (const kind of TOKEN_KINDS) if (added[kind] > 0) metrics.tokens.inc({ kind }, added[kind]);
  return added;
}

/**
 * Creates the series of one configured MCP server at 0 (`mcp_server_up`, restarts, failovers,
 * and an empty `tool_call_duration_seconds`), so a server that never answered still shows as down.
 * Never lowers a value that is already set; safe to call again after a reconfiguration.
 */
export function initialiseServerSeries(metrics: Metrics, server: string, mode: ToolMode): void {
  metrics.mcpServerUp.inc({ server, mode }, 0);
  metrics.mcpServerRestarts.inc({ server }, 0);
  metrics.mcpFailovers.inc({ server }, 0);
  metrics.toolCallDuration.zero({ server, mode });
}

/**
 * Creates `tool_calls_total` at 0 for one tool and every outcome, so `rate()` sees the first call.
 * Call when a server's tool list is known. Never lowers a value that is already set.
 */
export function initialiseToolSeries(metrics: Metrics, server: string, tool: string, mode: ToolMode): void {
  for (const outcome of TOOL_CALL_OUTCOMES) metrics.toolCalls.inc({ server, tool, mode, outcome }, 0);
}

/** The part of `ApprovalQueue` the metrics observe. */
export type ApprovalEventSource = Pick<EventEmitter<ApprovalQueueEvents>, "on" | "off"> & {
  readonly size: number;
};

/**
 * Keeps `approvals_pending` (the queue's size) and `approvals_total{server,decision,source}` in step
 * with a queue: every request the queue settles is counted once, with the queue's source (satellite,
 * ingress, timeout, cancelled). Approvals granted by policy never reach the queue: count those where
 * the policy is applied, with `source: "policy"`. Returns a function that stops observing.
 */
export function observeApprovals(metrics: Metrics, queue: ApprovalEventSource): () => void {
  const onAdded = (): void => {
    metrics.approvalsPending.set(queue.size);
  };
  const onResolved = (...[pending, decision]: ApprovalQueueEvents["resolved"]): void => {
    metrics.approvalsPending.set(queue.size);
    const label: ApprovalDecisionLabel = decision.approve ? "approved" : "denied";
    metrics.approvals.inc({ server: pending.server, decision: label, source: decision.source });
  };
  metrics.approvalsPending.set(queue.size);
  queue.on("added", onAdded);
  queue.on("resolved", onResolved);
  return () => {
    queue.off("added", onAdded);
    queue.off("resolved", onResolved);
  };
}
