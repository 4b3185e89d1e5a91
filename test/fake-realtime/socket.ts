/**
 * One upstream socket of the fake Realtime server, the part every session has: the socket and its
 * recording (`received`, `sent`, `waitFor`), errors, session set-up (faults and refusals first),
 * `session.update` and the listing of MCP tools. The input buffer and the responses build on it
 * (`input.ts`, `connection.ts`).
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import type { WebSocket } from "ws";
import type {
  ConversationItem,
  RealtimeClientEvent,
  RealtimeMcpListTools,
  RealtimeResponse,
  RealtimeServerEvent,
  RealtimeSessionCreateRequest,
} from "openai/resources/realtime/realtime";
import { FAULT_ERRORS, type FakeFault, type FakeRealtimeOptions, type FakeTurn } from "./script.js";
import { UsageMeter } from "./usage.js";

/** The transcription models the API accepts (the `openai` package's list). */
const TRANSCRIPTION_MODELS = new Set([
  "whisper-1",
  "gpt-4o-mini-transcribe",
  "gpt-4o-mini-transcribe-2025-12-15",
  "gpt-4o-transcribe",
  "gpt-4o-transcribe-diarize",
  "gpt-realtime-whisper",
]);

/** What a connection needs of its server (`FakeRealtimeServer`). */
export interface FakeHost {
  readonly opts: FakeRealtimeOptions;
  readonly replyAudio: Buffer;
  readonly connections: readonly unknown[];
  faultMode: FakeFault | null;
  faultAttempts: number;
  script(...turns: FakeTurn[]): void;
  takeTurn(): FakeTurn | undefined;
}

export interface ActiveResponse {
  readonly id: string;
  readonly output: ConversationItem[];
  /** What it said, for its usage: reply audio bytes sent and transcript characters. */
  outAudioBytes?: number;
  outTextChars?: number;
  timer?: NodeJS.Timeout;
  finish: (
    status: RealtimeResponse["status"] & string,
    reason?: "turn_detected" | "client_cancelled",
    details?: RealtimeResponse["status_details"],
  ) => void;
}

export type EventType = RealtimeClientEvent["type"];
export type EventOf<T extends EventType> = Extract<RealtimeClientEvent, { type: T }>;

let idCounter = 0;
export const nextId = (prefix: string): string =>
  `${prefix}_${(++idCounter).toString(36)}${randomBytes(3).toString("hex")}`;

export abstract class FakeSocket extends EventEmitter<{ event: [RealtimeClientEvent]; close: [] }> {
  /** Every client event received, in order. */
  readonly received: RealtimeClientEvent[] = [];
  /** Every server event sent, in order. */
  readonly sent: RealtimeServerEvent[] = [];
  /** The merged session config (what `session.updated` reports). */
  session: RealtimeSessionCreateRequest;
  readonly model: string | null;
  readonly headers: IncomingMessage["headers"];
  readonly id = nextId("sess");
  /** Server labels whose tools were listed (or are being listed), with the list item id. */
  readonly listed = new Map<string, string>();
  closed = false;
  /** Close code and reason as received from the client (1006 when the socket just died). */
  closeInfo: { code: number; reason: string } | null = null;

  protected readonly ws: WebSocket;
  protected readonly server: FakeHost;
  protected readonly timers = new Set<NodeJS.Timeout>();
  protected lastItemId: string | null = null;
  /** Client events that arrived before `session.created` wait here, as on a real upstream. */
  protected early: string[] | null = [];
  /** What the conversation has cost so far, for `response.done` usage. */
  protected readonly usage = new UsageMeter();

  protected constructor(ws: WebSocket, req: IncomingMessage, server: FakeHost) {
    super();
    this.ws = ws;
    this.server = server;
    this.headers = req.headers;
    this.model = new URL(req.url ?? "/", "http://x").searchParams.get("model");
    this.session = {
      type: "realtime",
      model: this.model ?? "gpt-realtime",
      output_modalities: ["audio"],
      instructions: "",
      audio: {
        input: {
          format: { type: "audio/pcm", rate: 24000 },
          turn_detection: {
            type: "server_vad",
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
          },
        },
        output: { format: { type: "audio/pcm", rate: 24000 }, voice: "marin" },
      },
      tools: [],
      tool_choice: "auto",
    };
    ws.on("message", (data, isBinary) => {
      if (isBinary)
        return this.error(
          "invalid_request_error",
          "binary_not_supported",
          "Binary frames are not supported.",
        );
      this.onMessage(Buffer.isBuffer(data) ? data.toString("utf8") : "");
    });
    ws.on("close", (code, reason) => {
      this.closed = true;
      this.closeInfo = { code, reason: reason.toString("utf8") };
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      this.onClosed();
      this.emit("close");
    });
    const fault = server.faultMode;
    if (fault !== null) server.faultAttempts++;
    // Silent: the socket stays open and every client event stays in early, unanswered.
    if (fault === "silent") return;
    const refusal =
      fault !== null && fault !== "unavailable"
        ? FAULT_ERRORS[fault]
        : server.opts.refuseSession?.(server.connections.length + 1);
    if (refusal) {
      // Client events stay in early: a refused session answers nothing.
      setImmediate(() => {
        this.error(refusal.type ?? "invalid_request_error", refusal.code, refusal.message ?? refusal.code);
        this.ws.close(1008, refusal.code);
      });
      return;
    }
    this.later(server.opts.sessionSetupDelayMs ?? 0, () => {
      this.send({ type: "session.created", event_id: nextId("event"), session: this.session });
      const early = this.early ?? [];
      this.early = null;
      for (const text of early) this.onMessage(text);
    });
    if (server.opts.maxSessionMs !== undefined)
      this.later(server.opts.maxSessionMs, () => this.expire("error"));
  }

  /** Handles one recorded client event (after `session.created`). */
  protected abstract dispatch(ev: RealtimeClientEvent): void;

  /** The socket closed: stop what runs on timers of one's own. */
  protected abstract onClosed(): void;

  /** Sends any GA server event. */
  send(event: RealtimeServerEvent): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    this.sent.push(event);
    this.ws.send(JSON.stringify(event));
  }

  /** Sends an `error` event. */
  sendError(code: string, message = code, errorType = "invalid_request_error"): void {
    this.error(errorType, code, message);
  }

  /** Kills the socket without a close frame (a network drop). */
  drop(): void {
    this.ws.terminate();
  }

  /** Session limit: `close` → close 1001 "maximum duration"; `error` → `session_expired` then close 1001. */
  expire(how: "close" | "error"): void {
    if (how === "error")
      this.error(
        "invalid_request_error",
        "session_expired",
        "Your session hit the maximum duration of 60 minutes.",
      );
    this.ws.close(1001, "maximum duration reached");
  }

  /** Resolves with the first received event of that type (already received or future) matching `pred`. */
  waitFor<T extends EventType>(
    type: T,
    pred: (e: EventOf<T>) => boolean = () => true,
    timeoutMs = 5000,
  ): Promise<EventOf<T>> {
    const match = (e: RealtimeClientEvent): e is EventOf<T> => e.type === type && pred(e as EventOf<T>);
    const found = this.received.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("event", on);
        reject(new Error(`fake realtime: no ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (e: RealtimeClientEvent): void => {
        if (!match(e)) return;
        clearTimeout(timer);
        this.off("event", on);
        resolve(e);
      };
      this.on("event", on);
    });
  }

  /** Received events of one type. */
  all<T extends EventType>(type: T): EventOf<T>[] {
    return this.received.filter((e): e is EventOf<T> => e.type === type);
  }

  protected later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(t);
  }

  protected error(type: string, code: string, message: string, eventId: string | null = null): void {
    this.send({
      type: "error",
      event_id: nextId("event"),
      error: { type, code, message, param: null, event_id: eventId },
    });
  }

  protected onMessage(text: string): void {
    if (this.early) return void this.early.push(text);
    let ev: RealtimeClientEvent;
    try {
      const parsed: unknown = JSON.parse(text);
      if (
        typeof parsed !== "object" ||
        parsed === null ||
        typeof (parsed as { type?: unknown }).type !== "string"
      )
        throw new Error("no type");
      ev = parsed as RealtimeClientEvent;
    } catch {
      return this.error(
        "invalid_request_error",
        "invalid_json",
        "The event is not a JSON object with a type.",
      );
    }
    if (ev.type !== "input_audio_buffer.append" || this.server.opts.keepAppends !== false)
      this.received.push(ev);
    this.emit("event", ev);
    this.dispatch(ev);
  }

  protected onSessionUpdate(ev: EventOf<"session.update">): void {
    const s = ev.session;
    if (s.type !== "realtime")
      return this.error(
        "invalid_request_error",
        "invalid_value",
        "session.type must be realtime.",
        ev.event_id,
      );
    for (const tool of s.tools ?? []) {
      if (tool.type === "function" && !/^[a-zA-Z0-9_-]{1,64}$/.test(tool.name ?? ""))
        return this.error(
          "invalid_request_error",
          "invalid_value",
          `Invalid function name ${tool.name}.`,
          ev.event_id,
        );
      if (
        tool.type === "mcp" &&
        typeof tool.require_approval === "object" &&
        tool.require_approval !== null
      ) {
        const bad = Object.keys(tool.require_approval).filter((k) => k !== "always" && k !== "never");
        if (bad.length > 0)
          return this.error(
            "invalid_request_error",
            "unknown_parameter",
            `Unknown require_approval key ${bad[0]}.`,
            ev.event_id,
          );
      }
    }
    const transcription = s.audio?.input?.transcription;
    if (transcription?.model !== undefined && !TRANSCRIPTION_MODELS.has(transcription.model))
      return this.error(
        "invalid_request_error",
        "invalid_value",
        `Invalid value: '${transcription.model}'. Supported values are: ${[...TRANSCRIPTION_MODELS].map((m) => `'${m}'`).join(", ")}.`,
        ev.event_id,
      );
    const prev = this.session;
    this.session = {
      ...prev,
      ...s,
      audio: {
        input: { ...prev.audio?.input, ...s.audio?.input },
        output: { ...prev.audio?.output, ...s.audio?.output },
      },
    };
    this.later(this.server.opts.sessionUpdateDelayMs ?? 0, () => {
      this.send({ type: "session.updated", event_id: nextId("event"), session: this.session });
      this.listTools();
    });
  }

  protected listTools(): void {
    const labels = new Set<string>();
    for (const tool of this.session.tools ?? []) {
      if (tool.type !== "mcp") continue;
      labels.add(tool.server_label);
      if (this.listed.has(tool.server_label)) continue;
      const itemId = nextId("mcpl");
      this.listed.set(tool.server_label, itemId);
      const script = this.server.opts.mcp?.[tool.server_label] ?? { outcome: "completed" };
      const item: RealtimeMcpListTools = {
        type: "mcp_list_tools",
        id: itemId,
        server_label: tool.server_label,
        tools: [],
      };
      const previous = this.lastItemId;
      this.lastItemId = itemId;
      const announce = (): void => {
        if (script.itemVia === "done")
          return this.send({
            type: "conversation.item.done",
            event_id: nextId("event"),
            item: { ...item, tools: script.tools ?? [] },
            previous_item_id: previous,
          });
        this.send({
          type: "conversation.item.added",
          event_id: nextId("event"),
          item,
          previous_item_id: previous,
        });
      };
      const outcomeFirst = script.order === "outcome_first";
      if (!outcomeFirst) announce();
      this.send({ type: "mcp_list_tools.in_progress", event_id: nextId("event"), item_id: itemId });
      this.later(script.delayMs ?? 0, () => {
        if (script.outcome === "failed") {
          this.send({ type: "mcp_list_tools.failed", event_id: nextId("event"), item_id: itemId });
          if (outcomeFirst) announce();
          this.error(
            "server_error",
            "mcp_list_tools_failed",
            `Could not list tools of ${tool.server_label}.`,
          );
          return;
        }
        this.send({ type: "mcp_list_tools.completed", event_id: nextId("event"), item_id: itemId });
        if (outcomeFirst) announce();
        if (script.itemVia !== "done")
          this.send({
            type: "conversation.item.done",
            event_id: nextId("event"),
            item: { ...item, tools: script.tools ?? [] },
          });
      });
    }
    for (const label of [...this.listed.keys()]) if (!labels.has(label)) this.listed.delete(label);
  }
}
