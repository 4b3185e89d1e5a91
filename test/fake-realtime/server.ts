/**
 * A fake OpenAI Realtime server (GA protocol) on 127.0.0.1 for tests and benchmarks.
 *
 * Usage:
 *   const fake = await startFakeRealtime({ apiKey: "sk-test", sessionSetupDelayMs: 0 });
 *   // point the engine at fake.url (ws://127.0.0.1:PORT/v1/realtime) with api key "sk-test"
 *   const conn = await fake.nextConnection();           // one FakeConnection per upstream socket
 *   await conn.waitFor("session.update");               // every client event is recorded in conn.received
 *   fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"hi"}' }); // next response.create
 *   conn.drop();  conn.expire("close");  conn.expire("error");  conn.send({...GA server event...});
 *   await fake.close();
 *
 * Behaviour: checks `Authorization: Bearer <apiKey>` (401 otherwise) and rejects an `OpenAI-Beta`
 * header (400). Sends `session.created` (after `sessionSetupDelayMs`) and answers each `session.update`
 * with `session.updated` carrying the merged session. Every `type:"mcp"` tool newly present in an
 * update gets a `mcp_list_tools` item and `mcp_list_tools.in_progress → completed|failed` (scripted per
 * server_label through `mcp`). Appended audio drives a simple server VAD (RMS over 10 ms frames of the
 * appended PCM; audio time, not wall time): `speech_started` after `vad.speechMs` of loud audio,
 * `speech_stopped` + commit + user transcript after `vad.silenceMs` of quiet, then a response when
 * `create_response` is on. `response.create` plays the next scripted turn (default: a spoken reply of
 * `replyAudio` in `response.output_audio.delta` chunks, `audioSpeed` times faster than real time).
 * A second `response.create` while one is active gets `conversation_already_has_active_response`.
 * A function call turn is answered, on `function_call_output` + `response.create`, by a spoken answer
 * that quotes the output. An approval turn emits an `mcp_approval_request` item; an approving
 * `mcp_approval_response` runs the `mcp_call` (its output scripted), after which `response.create` speaks.
 * A commit (client or VAD) is transcribed (`transcribe(pcm)` or `userTranscript`): word deltas, then
 * `.completed` (or `.failed`), after or before the user item's `conversation.item.done` (`transcription`).
 * `turn_detection.create_response: false` commits turns without a response. An out-of-band `response.create`
 * (`response.conversation: "none"`) speaks the text of its `input` in `speechAudio(text, voice)` (the voice
 * named in the response, else the session's), echoes `metadata`,
 * runs beside any other response and adds nothing to the conversation.
 * Every server event is typed with the `openai` package's `RealtimeServerEvent`, so drift breaks the build.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import type {
  ConversationItem,
  RealtimeClientEvent,
  RealtimeConversationItemUserMessage,
  RealtimeMcpListTools,
  RealtimeResponse,
  RealtimeResponseUsage,
  RealtimeServerEvent,
  RealtimeSessionCreateRequest,
} from "openai/resources/realtime/realtime";

/** What `mcp_list_tools` does for one server_label. Default: completes at once with no tools. */
export interface FakeMcpScript {
  outcome: "completed" | "failed";
  delayMs?: number;
  tools?: RealtimeMcpListTools.Tool[];
  /**
   * Event order the API allows: `item_first` (default) sends `conversation.item.added` before
   * `mcp_list_tools.*`; `outcome_first` sends `in_progress` and the outcome before any item event.
   * `itemVia: "done"` announces the item only through `conversation.item.done` (no `.added`).
   */
  order?: "item_first" | "outcome_first";
  itemVia?: "added" | "done";
}

/** An upstream `error` event as the fake sends it. */
export interface FakeUpstreamError {
  code: string;
  message?: string;
  /** `error.type`; default `invalid_request_error`. */
  type?: string;
}

/**
 * An outage of the upstream (`FakeRealtimeServer.fault`): `quota` answers every new socket's first event
 * with `insufficient_quota` and closes it, `bad_key` with `invalid_api_key`; `silent` accepts the socket and
 * never says anything.
 */
/**
 * `quota`, `bad_key`: refused sessions; `silent`: the socket opens and nothing is said; `unavailable`: the
 * upgrade is refused with 503 (a passing failure, not a refusal of the account).
 */
export type FakeFault = "quota" | "bad_key" | "silent" | "unavailable";

const FAULT_ERRORS: Record<Exclude<FakeFault, "silent" | "unavailable">, FakeUpstreamError> = {
  quota: {
    code: "insufficient_quota",
    type: "insufficient_quota",
    message: "You exceeded your current quota, please check your plan and billing details.",
  },
  bad_key: { code: "invalid_api_key", message: "Incorrect API key provided." },
};

/** One scripted reaction to a `response.create` (or to a VAD end of turn with create_response). */
export type FakeTurn =
  | { kind: "speak"; transcript?: string; audio?: Buffer }
  | { kind: "function_call"; name: string; arguments: string; callId?: string }
  | {
      kind: "mcp_approval";
      serverLabel: string;
      name: string;
      arguments: string;
      /** Output of the mcp_call when approved. */
      output?: string;
      /** Make the approved mcp_call fail instead. */
      fail?: boolean;
    }
  | { kind: "error"; code: string; message?: string; errorType?: string }
  /**
   * A native MCP call the model makes without asking (`require_approval: never`): the response carries
   * the `mcp_call` and ends without speaking, as the real API does. `order`: `completed_first` sends
   * `response.mcp_call.completed|failed` before the item's `.done` events, `item_first` after them.
   */
  | {
      kind: "mcp_call";
      serverLabel: string;
      name: string;
      arguments: string;
      output?: string;
      fail?: boolean;
      order?: "completed_first" | "item_first";
    }
  /**
   * A response that ends `failed` (the default, with a `server_error`) or `incomplete` before any
   * output.
   */
  | {
      kind: "failed";
      status?: "failed" | "incomplete";
      reason?: "max_output_tokens" | "content_filter";
      error?: { type: string; code?: string };
    }
  /** Starts a response and never finishes it (until cancelled or the socket ends). */
  | { kind: "hang" }
  /** Sends nothing at all. */
  | { kind: "silent" };

export interface FakeRealtimeOptions {
  /** Expected bearer key. Default `sk-test`. */
  apiKey?: string;
  /** Delay before `session.created` (a realistic upstream takes a few hundred ms). Default 0. */
  sessionSetupDelayMs?: number;
  /** Delay before each `session.updated`. Default 0. */
  sessionUpdateDelayMs?: number;
  /** Per server_label list-tools behaviour. */
  mcp?: Record<string, FakeMcpScript>;
  /** Reply audio, PCM16 24 kHz mono. Default: 400 ms of a 440 Hz tone. */
  replyAudio?: Buffer;
  /** Transcript of spoken replies. Default "Sure, done." */
  replyTranscript?: string;
  /** Transcript the fake "hears" for each committed user turn. Default "turn on the kitchen light". */
  userTranscript?: string;
  /** Transcript of one committed turn from its audio (PCM16 24 kHz); overrides `userTranscript`. */
  transcribe?: (pcm: Buffer) => string;
  /**
   * Input transcription after a commit: `delayMs` after `conversation.item.added` (default 5), as word
   * deltas then `.completed` (or `.failed` when `fail`), sent `after_item_done` (default) or
   * `before_item_done` (the user item's `conversation.item.done` waits for the transcript). Transcription
   * runs unless a `session.update` set `audio.input.transcription` to null.
   */
  transcription?: { delayMs?: number; order?: "after_item_done" | "before_item_done"; fail?: boolean };
  /**
   * Audio of an out-of-band spoken text (PCM16 24 kHz) in `voice`: the response's own
   * `audio.output.voice`, else the session's. Default: `replyAudio`.
   */
  speechAudio?: (text: string, voice: string) => Buffer;
  /**
   * Delay from the commit to the input transcription (`transcription.delayMs` wins). Default 5.
   * Transcription runs beside the response, so with a long delay the reply's deltas come first, as
   * they often do upstream.
   */
  userTranscriptDelayMs?: number;
  /** Audio chunk size in ms. Default 100. */
  chunkMs?: number;
  /** Multiple of real time at which reply audio is sent; Infinity sends all at once. Default 4. */
  audioSpeed?: number;
  /** Server VAD tuning (audio time). */
  vad?: { threshold?: number; speechMs?: number; silenceMs?: number };
  /** Usage reported in every `response.done`. */
  usage?: RealtimeResponseUsage;
  /**
   * Per connection attempt (1-based, counting accepted sockets): an `error` sent as the socket's first
   * event, before `session.created`, after which the fake closes the socket (as an out-of-quota or
   * revoked key is answered). Undefined: a normal session.
   */
  refuseSession?: (attempt: number) => FakeUpstreamError | undefined;
  /**
   * When an approved native call runs: `approval` (default) starts a response running it as soon as the
   * approving `mcp_approval_response` arrives; `response.create` waits for the client's next
   * `response.create`. The API's documentation allows either reading; the session must work with both.
   */
  approvedCallRunsOn?: "approval" | "response.create";
  /** Ends every session with `session_expired` + close 1001 after this many ms. */
  maxSessionMs?: number;
  /**
   * Model "thinking" time of a spoken reply: from `response.created` to its first output event.
   * Default 0. A fixed delay makes end-to-end latency figures comparable with a real upstream.
   */
  replyDelayMs?: number;
  /**
   * A busy upstream: a client `response.create` (in-band), or the response server VAD starts at the end
   * of a turn, begins (with its `response.created`) only this many ms later. Default 0.
   */
  responseCreatedDelayMs?: number;
}

const SAMPLE_RATE = 24_000;
/** The transcription models the API accepts (the `openai` package's list). */
const TRANSCRIPTION_MODELS = new Set([
  "whisper-1",
  "gpt-4o-mini-transcribe",
  "gpt-4o-mini-transcribe-2025-12-15",
  "gpt-4o-transcribe",
  "gpt-4o-transcribe-diarize",
  "gpt-realtime-whisper",
]);
const FRAME_SAMPLES = 240; // 10 ms
/** Realtime audio tokens: input 1 per 100 ms, output 1 per 50 ms (PCM16 24 kHz: 48 bytes a ms). */
const BYTES_PER_INPUT_TOKEN = 4800;
const BYTES_PER_OUTPUT_TOKEN = 2400;
/** Text tokens of `chars` characters (about four characters a token). */
const textTokens = (chars: number): number => Math.ceil(chars / 4);

/** A tone, PCM16 24 kHz mono. */
export function tone(ms: number, hz = 440, amplitude = 0.3): Buffer {
  const n = Math.round((SAMPLE_RATE * ms) / 1000);
  const out = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++)
    out.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / SAMPLE_RATE) * amplitude * 32767), i * 2);
  return out;
}

/** RMS of PCM16 samples, 0..1. */
export function rms(pcm: Buffer, start = 0, end = pcm.length): number {
  let sum = 0;
  let n = 0;
  for (let i = start; i + 1 < end; i += 2) {
    const s = pcm.readInt16LE(i) / 32768;
    sum += s * s;
    n++;
  }
  return n === 0 ? 0 : Math.sqrt(sum / n);
}

interface ActiveResponse {
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

type EventType = RealtimeClientEvent["type"];
type EventOf<T extends EventType> = Extract<RealtimeClientEvent, { type: T }>;

let idCounter = 0;
const nextId = (prefix: string): string =>
  `${prefix}_${(++idCounter).toString(36)}${randomBytes(3).toString("hex")}`;

/** One upstream socket as the fake sees it. */
export class FakeConnection extends EventEmitter<{ event: [RealtimeClientEvent]; close: [] }> {
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

  readonly #ws: WebSocket;
  readonly #server: FakeRealtimeServer;
  readonly #timers = new Set<NodeJS.Timeout>();
  #active: ActiveResponse | null = null;
  /** Out-of-band responses (`conversation: "none"`) in flight; any number, beside the in-band one. */
  readonly #outOfBand = new Map<string, ActiveResponse>();
  /** Audio appended since the last commit (what the transcriber hears). */
  #turnAudio: Buffer[] = [];
  #lastItemId: string | null = null;
  /** Client events that arrived before `session.created` wait here, as on a real upstream. */
  #early: string[] | null = [];
  #pendingOutput: { callId: string; output: string } | null = null;
  #pendingMcpAnswer: string | null = null;
  /** An approved call waiting for `response.create` (`approvedCallRunsOn: "response.create"`). */
  #approvedCall: { approvalId: string; req: Extract<FakeTurn, { kind: "mcp_approval" }> } | null = null;
  readonly #approvals = new Map<string, Extract<FakeTurn, { kind: "mcp_approval" }>>();
  // input buffer + VAD state (audio time)
  #buffered = 0;
  #audioMs = 0;
  #speechMs = 0;
  #silenceMs = 0;
  #inSpeech = false;
  #speechStartMs = 0;
  #speechItemId = "";
  /** Conversation tokens after the instructions (what every response re-reads), and the last response's input. */
  readonly #context = { text: 0, audio: 0 };
  #lastInput = { text: 0, audio: 0 };

  constructor(ws: WebSocket, req: IncomingMessage, server: FakeRealtimeServer) {
    super();
    this.#ws = ws;
    this.#server = server;
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
        return this.#error(
          "invalid_request_error",
          "binary_not_supported",
          "Binary frames are not supported.",
        );
      this.#onMessage(Buffer.isBuffer(data) ? data.toString("utf8") : "");
    });
    ws.on("close", (code, reason) => {
      this.closed = true;
      this.closeInfo = { code, reason: reason.toString("utf8") };
      for (const t of this.#timers) clearTimeout(t);
      this.#timers.clear();
      if (this.#active?.timer) clearTimeout(this.#active.timer);
      for (const r of this.#outOfBand.values()) clearTimeout(r.timer);
      this.emit("close");
    });
    const fault = server.faultMode;
    if (fault !== null) server.faultAttempts++;
    // Silent: the socket stays open and every client event stays in #early, unanswered.
    if (fault === "silent") return;
    const refusal =
      fault !== null && fault !== "unavailable"
        ? FAULT_ERRORS[fault]
        : server.opts.refuseSession?.(server.connections.length + 1);
    if (refusal) {
      // Client events stay in #early: a refused session answers nothing.
      setImmediate(() => {
        this.#error(refusal.type ?? "invalid_request_error", refusal.code, refusal.message ?? refusal.code);
        this.#ws.close(1008, refusal.code);
      });
      return;
    }
    this.#later(server.opts.sessionSetupDelayMs ?? 0, () => {
      this.send({ type: "session.created", event_id: nextId("event"), session: this.session });
      const early = this.#early ?? [];
      this.#early = null;
      for (const text of early) this.#onMessage(text);
    });
    if (server.opts.maxSessionMs !== undefined)
      this.#later(server.opts.maxSessionMs, () => this.expire("error"));
  }

  /** Sends any GA server event. */
  send(event: RealtimeServerEvent): void {
    if (this.closed || this.#ws.readyState !== this.#ws.OPEN) return;
    this.sent.push(event);
    this.#ws.send(JSON.stringify(event));
  }

  /** Sends an `error` event. */
  sendError(code: string, message = code, errorType = "invalid_request_error"): void {
    this.#error(errorType, code, message);
  }

  /** Kills the socket without a close frame (a network drop). */
  drop(): void {
    this.#ws.terminate();
  }

  /** Session limit: `close` → close 1001 "maximum duration"; `error` → `session_expired` then close 1001. */
  expire(how: "close" | "error"): void {
    if (how === "error")
      this.#error(
        "invalid_request_error",
        "session_expired",
        "Your session hit the maximum duration of 60 minutes.",
      );
    this.#ws.close(1001, "maximum duration reached");
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

  get responseActive(): boolean {
    return this.#active !== null;
  }

  #later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.#timers.add(t);
  }

  #error(type: string, code: string, message: string, eventId: string | null = null): void {
    this.send({
      type: "error",
      event_id: nextId("event"),
      error: { type, code, message, param: null, event_id: eventId },
    });
  }

  #onMessage(text: string): void {
    if (this.#early) return void this.#early.push(text);
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
      return this.#error(
        "invalid_request_error",
        "invalid_json",
        "The event is not a JSON object with a type.",
      );
    }
    this.received.push(ev);
    this.emit("event", ev);
    switch (ev.type) {
      case "session.update":
        return this.#onSessionUpdate(ev);
      case "input_audio_buffer.append":
        return this.#onAppend(ev);
      case "input_audio_buffer.commit":
        if (this.#buffered === 0)
          return this.#error(
            "invalid_request_error",
            "input_audio_buffer_commit_empty",
            "Buffer too small.",
            ev.event_id,
          );
        return this.#commit();
      case "input_audio_buffer.clear":
        this.#buffered = 0;
        this.#turnAudio = [];
        return this.send({ type: "input_audio_buffer.cleared", event_id: nextId("event") });
      case "response.create":
        if (ev.response?.conversation === "none") return this.#onOutOfBandCreate(ev);
        return this.#respondLater(ev.event_id);
      case "response.cancel":
        if (ev.response_id !== undefined && this.#outOfBand.has(ev.response_id))
          return this.#outOfBand.get(ev.response_id)?.finish("cancelled", "client_cancelled");
        if (!this.#active)
          return this.#error(
            "invalid_request_error",
            "response_cancel_not_active",
            "No active response.",
            ev.event_id,
          );
        return this.#active.finish("cancelled", "client_cancelled");
      case "conversation.item.create":
        return this.#onItemCreate(ev);
      case "conversation.item.truncate":
        return this.send({
          type: "conversation.item.truncated",
          event_id: nextId("event"),
          item_id: ev.item_id,
          content_index: ev.content_index,
          audio_end_ms: ev.audio_end_ms,
        });
      default:
        return;
    }
  }

  #onSessionUpdate(ev: EventOf<"session.update">): void {
    const s = ev.session;
    if (s.type !== "realtime")
      return this.#error(
        "invalid_request_error",
        "invalid_value",
        "session.type must be realtime.",
        ev.event_id,
      );
    for (const tool of s.tools ?? []) {
      if (tool.type === "function" && !/^[a-zA-Z0-9_-]{1,64}$/.test(tool.name ?? ""))
        return this.#error(
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
          return this.#error(
            "invalid_request_error",
            "unknown_parameter",
            `Unknown require_approval key ${bad[0]}.`,
            ev.event_id,
          );
      }
    }
    const transcription = s.audio?.input?.transcription;
    if (transcription?.model !== undefined && !TRANSCRIPTION_MODELS.has(transcription.model))
      return this.#error(
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
    this.#later(this.#server.opts.sessionUpdateDelayMs ?? 0, () => {
      this.send({ type: "session.updated", event_id: nextId("event"), session: this.session });
      this.#listTools();
    });
  }

  #listTools(): void {
    const labels = new Set<string>();
    for (const tool of this.session.tools ?? []) {
      if (tool.type !== "mcp") continue;
      labels.add(tool.server_label);
      if (this.listed.has(tool.server_label)) continue;
      const itemId = nextId("mcpl");
      this.listed.set(tool.server_label, itemId);
      const script = this.#server.opts.mcp?.[tool.server_label] ?? { outcome: "completed" };
      const item: RealtimeMcpListTools = {
        type: "mcp_list_tools",
        id: itemId,
        server_label: tool.server_label,
        tools: [],
      };
      const previous = this.#lastItemId;
      this.#lastItemId = itemId;
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
      this.#later(script.delayMs ?? 0, () => {
        if (script.outcome === "failed") {
          this.send({ type: "mcp_list_tools.failed", event_id: nextId("event"), item_id: itemId });
          if (outcomeFirst) announce();
          this.#error(
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

  #onAppend(ev: EventOf<"input_audio_buffer.append">): void {
    const pcm = Buffer.from(ev.audio, "base64");
    if (pcm.length % 2 !== 0)
      return this.#error(
        "invalid_request_error",
        "invalid_audio",
        "PCM16 audio must have an even byte count.",
        ev.event_id,
      );
    this.#buffered += pcm.length;
    this.#turnAudio.push(pcm);
    const td = this.session.audio?.input?.turn_detection;
    const vad = this.#server.opts.vad ?? {};
    const threshold = vad.threshold ?? 0.02;
    const speechMs = vad.speechMs ?? 60;
    const silenceMs = vad.silenceMs ?? 300;
    for (let off = 0; off < pcm.length; off += FRAME_SAMPLES * 2) {
      const end = Math.min(pcm.length, off + FRAME_SAMPLES * 2);
      const frameMs = (end - off) / 2 / (SAMPLE_RATE / 1000);
      this.#audioMs += frameMs;
      if (!td) continue;
      const loud = rms(pcm, off, end) >= threshold;
      if (!this.#inSpeech) {
        this.#speechMs = loud ? this.#speechMs + frameMs : 0;
        if (this.#speechMs >= speechMs) {
          this.#inSpeech = true;
          this.#silenceMs = 0;
          this.#speechStartMs = Math.max(0, this.#audioMs - this.#speechMs);
          this.#speechItemId = nextId("item");
          this.send({
            type: "input_audio_buffer.speech_started",
            event_id: nextId("event"),
            audio_start_ms: Math.round(this.#speechStartMs),
            item_id: this.#speechItemId,
          });
          if (this.#active && td.interrupt_response !== false)
            this.#active.finish("cancelled", "turn_detected");
        }
      } else {
        this.#silenceMs = loud ? 0 : this.#silenceMs + frameMs;
        if (this.#silenceMs >= silenceMs) {
          this.#inSpeech = false;
          this.#speechMs = 0;
          this.send({
            type: "input_audio_buffer.speech_stopped",
            event_id: nextId("event"),
            audio_end_ms: Math.round(this.#audioMs),
            item_id: this.#speechItemId,
          });
          this.#commit(this.#speechItemId);
          if (td.create_response !== false) this.#respondLater(undefined);
        }
      }
    }
  }

  #commit(itemId = nextId("item")): void {
    this.#buffered = 0;
    const opts = this.#server.opts;
    const heard = Buffer.concat(this.#turnAudio);
    this.#turnAudio = [];
    this.#context.audio += Math.round(heard.length / BYTES_PER_INPUT_TOKEN);
    const transcript = opts.transcribe?.(heard) ?? opts.userTranscript ?? "turn on the kitchen light";
    this.send({
      type: "input_audio_buffer.committed",
      event_id: nextId("event"),
      item_id: itemId,
      previous_item_id: this.#lastItemId,
    });
    const item: RealtimeConversationItemUserMessage = {
      type: "message",
      role: "user",
      id: itemId,
      object: "realtime.item",
      status: "completed",
      content: [{ type: "input_audio" }],
    };
    const previous = this.#lastItemId;
    this.send({
      type: "conversation.item.added",
      event_id: nextId("event"),
      item,
      previous_item_id: previous,
    });
    this.#lastItemId = itemId;
    const itemDone = (text: string | null): void =>
      this.send({
        type: "conversation.item.done",
        event_id: nextId("event"),
        item: { ...item, content: [{ type: "input_audio", ...(text === null ? {} : { transcript: text }) }] },
        previous_item_id: previous,
      });
    const tr = opts.transcription ?? {};
    const transcribing = this.session.audio?.input?.transcription !== null;
    if (!transcribing) return itemDone(null);
    const order = tr.order ?? "after_item_done";
    if (order === "after_item_done") itemDone(null);
    this.#later(tr.delayMs ?? opts.userTranscriptDelayMs ?? 5, () => {
      if (tr.fail) {
        this.send({
          type: "conversation.item.input_audio_transcription.failed",
          event_id: nextId("event"),
          item_id: itemId,
          content_index: 0,
          error: {
            type: "transcription_error",
            code: "audio_unintelligible",
            message: "Audio unintelligible.",
          },
        });
      } else {
        for (const word of transcript.split(/(?<= )/))
          this.send({
            type: "conversation.item.input_audio_transcription.delta",
            event_id: nextId("event"),
            item_id: itemId,
            content_index: 0,
            delta: word,
          });
        this.send({
          type: "conversation.item.input_audio_transcription.completed",
          event_id: nextId("event"),
          item_id: itemId,
          content_index: 0,
          transcript,
          // whisper-1 is billed by duration, the gpt-4o transcribe models by tokens.
          usage:
            this.session.audio?.input?.transcription?.model === "whisper-1"
              ? { type: "duration", seconds: Math.max(1, Math.round(heard.length / 48_000)) }
              : {
                  type: "tokens",
                  input_tokens: Math.round(heard.length / BYTES_PER_INPUT_TOKEN),
                  output_tokens: textTokens(transcript.length),
                  total_tokens:
                    Math.round(heard.length / BYTES_PER_INPUT_TOKEN) + textTokens(transcript.length),
                  input_token_details: {
                    audio_tokens: Math.round(heard.length / BYTES_PER_INPUT_TOKEN),
                    text_tokens: 0,
                  },
                },
        });
      }
      if (order === "before_item_done") itemDone(tr.fail ? null : transcript);
    });
  }

  #onItemCreate(ev: EventOf<"conversation.item.create">): void {
    const item = { ...ev.item, id: ev.item.id ?? nextId("item") };
    this.#context.text += textTokens(JSON.stringify(ev.item).length);
    this.send({
      type: "conversation.item.added",
      event_id: nextId("event"),
      item,
      previous_item_id: this.#lastItemId,
    });
    this.send({
      type: "conversation.item.done",
      event_id: nextId("event"),
      item,
      previous_item_id: this.#lastItemId,
    });
    this.#lastItemId = item.id;
    if (item.type === "function_call_output")
      this.#pendingOutput = { callId: item.call_id, output: item.output };
    if (item.type === "mcp_approval_response") {
      const req = this.#approvals.get(item.approval_request_id);
      if (!req)
        return this.#error(
          "invalid_request_error",
          "invalid_value",
          "Unknown approval_request_id.",
          ev.event_id,
        );
      this.#approvals.delete(item.approval_request_id);
      if (!item.approve) return;
      if (this.#server.opts.approvedCallRunsOn === "response.create")
        this.#approvedCall = { approvalId: item.approval_request_id, req };
      else this.#runMcpCall(item.approval_request_id, req);
    }
  }

  #runMcpCall(approvalId: string, req: Extract<FakeTurn, { kind: "mcp_approval" }>): void {
    this.#startResponse((r, done) => this.#playMcpCall(r, done, req, approvalId));
  }

  /**
   * Plays one `mcp_call` in response `r` and finishes it without speaking; the next `response.create`
   * speaks the result. Both orders of the completion event and the item's `.done` events occur.
   */
  #playMcpCall(
    r: ActiveResponse,
    done: () => void,
    req: {
      serverLabel: string;
      name: string;
      arguments: string;
      output?: string;
      fail?: boolean;
      order?: string;
    },
    approvalId: string | null,
  ): void {
    const callId = nextId("mcp");
    const call: ConversationItem = {
      type: "mcp_call",
      id: callId,
      server_label: req.serverLabel,
      name: req.name,
      arguments: req.arguments,
      ...(approvalId !== null ? { approval_request_id: approvalId } : {}),
      output: null,
      error: null,
    };
    this.#addOutputItem(r.id, call);
    this.send({
      type: "response.mcp_call_arguments.done",
      event_id: nextId("event"),
      response_id: r.id,
      item_id: callId,
      output_index: 0,
      arguments: req.arguments,
    });
    this.send({
      type: "response.mcp_call.in_progress",
      event_id: nextId("event"),
      item_id: callId,
      output_index: 0,
    });
    this.#later(10, () => {
      const final: ConversationItem = req.fail
        ? { ...call, error: { type: "tool_execution_error", message: "the tool failed" } }
        : { ...call, output: req.output ?? "ok" };
      const outcome = (): void =>
        this.send({
          type: req.fail ? "response.mcp_call.failed" : "response.mcp_call.completed",
          event_id: nextId("event"),
          item_id: callId,
          output_index: 0,
        });
      const itemDone = (): void => {
        this.send({
          type: "response.output_item.done",
          event_id: nextId("event"),
          response_id: r.id,
          output_index: 0,
          item: final,
        });
        this.send({ type: "conversation.item.done", event_id: nextId("event"), item: final });
      };
      if (req.order === "item_first") {
        itemDone();
        outcome();
      } else {
        outcome();
        itemDone();
      }
      r.output.push(final);
      this.#pendingMcpAnswer = req.fail ? "the tool failed" : (req.output ?? "ok");
      done();
    });
  }

  /** Starts a response on the server's own initiative (as server VAD does), playing `turn`. */
  startServerResponse(turn: FakeTurn): void {
    this.#server.script(turn);
    this.#onResponseCreate(undefined, true);
  }

  /** `#onResponseCreate` after `responseCreatedDelayMs` (a busy upstream), or now. */
  #respondLater(eventId: string | undefined): void {
    const delay = this.#server.opts.responseCreatedDelayMs ?? 0;
    if (delay > 0) this.#later(delay, () => this.#onResponseCreate(eventId));
    else this.#onResponseCreate(eventId);
  }

  #onResponseCreate(eventId: string | undefined, ownTurn = false): void {
    if (this.#active)
      return this.#error(
        "invalid_request_error",
        "conversation_already_has_active_response",
        `Conversation already has an active response in progress: ${this.#active.id}. Wait until the response is finished before creating a new one.`,
        eventId ?? null,
      );
    if (this.#pendingOutput && !ownTurn) {
      const { output } = this.#pendingOutput;
      this.#pendingOutput = null;
      return this.#speak(`The tool said: ${output}`);
    }
    if (this.#approvedCall !== null && !ownTurn) {
      const { approvalId, req } = this.#approvedCall;
      this.#approvedCall = null;
      return this.#runMcpCall(approvalId, req);
    }
    if (this.#pendingMcpAnswer !== null && !ownTurn) {
      const answer = this.#pendingMcpAnswer;
      this.#pendingMcpAnswer = null;
      return this.#speak(`The tool said: ${answer}`);
    }
    const turn = this.#server.takeTurn() ?? { kind: "speak" };
    switch (turn.kind) {
      case "speak":
        return this.#speak(turn.transcript, turn.audio);
      case "error":
        return this.#error(
          turn.errorType ?? "invalid_request_error",
          turn.code,
          turn.message ?? turn.code,
          eventId ?? null,
        );
      case "silent":
        return;
      case "hang":
        return this.#startResponse(() => undefined);
      case "mcp_call":
        return this.#startResponse((r, done) => this.#playMcpCall(r, done, turn, null));
      case "failed":
        return this.#startResponse((r) => {
          const status = turn.status ?? "failed";
          const error =
            turn.error ?? (status === "failed" ? { type: "server_error", code: "server_error" } : undefined);
          r.finish(status, undefined, {
            type: status,
            ...(turn.reason ? { reason: turn.reason } : {}),
            ...(error ? { error } : {}),
          });
        });
      case "function_call":
        return this.#startResponse((r, done) => {
          const itemId = nextId("item");
          const callId = turn.callId ?? nextId("call");
          const item: ConversationItem = {
            type: "function_call",
            id: itemId,
            call_id: callId,
            name: turn.name,
            arguments: "",
            status: "in_progress",
          };
          this.#addOutputItem(r.id, item);
          this.send({
            type: "response.function_call_arguments.delta",
            event_id: nextId("event"),
            response_id: r.id,
            item_id: itemId,
            output_index: 0,
            call_id: callId,
            delta: turn.arguments,
          });
          this.send({
            type: "response.function_call_arguments.done",
            event_id: nextId("event"),
            response_id: r.id,
            item_id: itemId,
            output_index: 0,
            call_id: callId,
            name: turn.name,
            arguments: turn.arguments,
          });
          const final: ConversationItem = { ...item, arguments: turn.arguments, status: "completed" };
          this.send({
            type: "response.output_item.done",
            event_id: nextId("event"),
            response_id: r.id,
            output_index: 0,
            item: final,
          });
          this.send({ type: "conversation.item.done", event_id: nextId("event"), item: final });
          r.output.push(final);
          done();
        });
      case "mcp_approval":
        return this.#startResponse((r, done) => {
          const id = nextId("mcpr");
          const item: ConversationItem = {
            type: "mcp_approval_request",
            id,
            server_label: turn.serverLabel,
            name: turn.name,
            arguments: turn.arguments,
          };
          this.#approvals.set(id, turn);
          this.#addOutputItem(r.id, item);
          this.send({
            type: "response.output_item.done",
            event_id: nextId("event"),
            response_id: r.id,
            output_index: 0,
            item,
          });
          this.send({ type: "conversation.item.done", event_id: nextId("event"), item });
          r.output.push(item);
          done();
        });
    }
  }

  /** A new output item of response `responseId`: `response.output_item.added` + `conversation.item.added`. */
  #addOutputItem(responseId: string, item: ConversationItem & { id?: string }): void {
    this.send({
      type: "response.output_item.added",
      event_id: nextId("event"),
      response_id: responseId,
      output_index: 0,
      item,
    });
    // Out-of-band output never enters the conversation.
    if (this.#outOfBand.has(responseId)) return;
    this.send({
      type: "conversation.item.added",
      event_id: nextId("event"),
      item,
      previous_item_id: this.#lastItemId,
    });
    this.#lastItemId = item.id ?? null;
  }

  /**
   * Starts a response; `body` plays it and calls `done()` to finish with status completed. With `outOfBand`
   * (the `response` of an out-of-band `response.create`) it runs beside any other and enters no conversation.
   */
  #startResponse(
    body: (r: ActiveResponse, done: () => void) => void,
    outOfBand?: NonNullable<EventOf<"response.create">["response"]>,
  ): void {
    const id = nextId("resp");
    const base = (): RealtimeResponse => ({
      id,
      object: "realtime.response",
      ...(outOfBand
        ? {
            metadata: outOfBand.metadata ?? null,
            output_modalities: outOfBand.output_modalities ?? ["audio"],
            ...(typeof outOfBand.audio?.output?.voice === "string"
              ? { audio: { output: { voice: outOfBand.audio.output.voice } } }
              : {}),
          }
        : { conversation_id: "conv_fake", output_modalities: ["audio" as const] }),
    });
    const r: ActiveResponse = {
      id,
      output: [],
      finish: (status, reason, details) => {
        if (outOfBand) {
          if (!this.#outOfBand.delete(id)) return;
        } else if (this.#active !== r) return;
        else this.#active = null;
        if (r.timer) clearTimeout(r.timer);
        this.send({
          type: "response.done",
          event_id: nextId("event"),
          response: {
            ...base(),
            status,
            status_details:
              details ??
              (status === "cancelled"
                ? { type: "cancelled", reason: reason ?? "client_cancelled" }
                : status === "failed"
                  ? { type: "failed", error: { type: "server_error", code: "server_error" } }
                  : { type: "completed" }),
            output: r.output,
            usage: this.#server.opts.usage ?? this.#usageOf(r, outOfBand !== undefined),
          },
        });
      },
    };
    if (outOfBand) this.#outOfBand.set(id, r);
    else this.#active = r;
    this.send({
      type: "response.created",
      event_id: nextId("event"),
      response: { ...base(), status: "in_progress", output: [] },
    });
    body(r, () => r.finish("completed"));
  }

  /**
   * A `response.done` usage as the API reports it: the instructions, tools and the conversation so far as
   * input (audio at 10 tokens a second), the previous response's input cached once it reached 1,024
   * tokens, the reply as output (audio at 20 tokens a second), which later responses re-read.
   */
  #usageOf(r: ActiveResponse, outOfBand: boolean): RealtimeResponseUsage {
    const fixed = textTokens(
      (this.session.instructions ?? "").length + JSON.stringify(this.session.tools ?? []).length,
    );
    const input = outOfBand
      ? { text: fixed, audio: 0 }
      : { text: fixed + this.#context.text, audio: this.#context.audio };
    const previous = this.#lastInput.text + this.#lastInput.audio;
    const cached =
      outOfBand || previous < 1024
        ? { text: 0, audio: 0 }
        : {
            text: Math.min(input.text, this.#lastInput.text),
            audio: Math.min(input.audio, this.#lastInput.audio),
          };
    const out = {
      text: textTokens(r.outTextChars ?? 0),
      audio: Math.round((r.outAudioBytes ?? 0) / BYTES_PER_OUTPUT_TOKEN),
    };
    if (!outOfBand) {
      this.#lastInput = input;
      this.#context.text += out.text;
      this.#context.audio += out.audio;
    }
    return {
      total_tokens: input.text + input.audio + out.text + out.audio,
      input_tokens: input.text + input.audio,
      output_tokens: out.text + out.audio,
      input_token_details: {
        text_tokens: input.text,
        audio_tokens: input.audio,
        image_tokens: 0,
        cached_tokens: cached.text + cached.audio,
        cached_tokens_details: { text_tokens: cached.text, audio_tokens: cached.audio, image_tokens: 0 },
      },
      output_token_details: { text_tokens: out.text, audio_tokens: out.audio },
    };
  }

  #speak(
    transcript = this.#server.opts.replyTranscript ?? "Sure, done.",
    audio = this.#server.replyAudio,
  ): void {
    this.#startResponse((r, done) => {
      const delay = this.#server.opts.replyDelayMs ?? 0;
      if (delay > 0) this.#later(delay, () => this.#isLive(r) && this.#speakBody(r, done, transcript, audio));
      else this.#speakBody(r, done, transcript, audio);
    });
  }

  #speakBody(r: ActiveResponse, done: () => void, transcript: string, audio: Buffer): void {
    const itemId = nextId("item");
    const item: ConversationItem = {
      type: "message",
      role: "assistant",
      id: itemId,
      status: "in_progress",
      content: [],
    };
    const ids = { response_id: r.id, item_id: itemId, output_index: 0 };
    this.#addOutputItem(r.id, item);
    this.send({
      type: "response.content_part.added",
      event_id: nextId("event"),
      ...ids,
      content_index: 0,
      part: { type: "audio", transcript: "" },
    });
    this.send({
      type: "response.output_audio_transcript.delta",
      event_id: nextId("event"),
      ...ids,
      content_index: 0,
      delta: transcript,
    });
    r.outTextChars = (r.outTextChars ?? 0) + transcript.length;
    const chunkMs = this.#server.opts.chunkMs ?? 100;
    const chunkBytes = Math.max(2, Math.round((SAMPLE_RATE * chunkMs) / 1000) * 2);
    const speed = this.#server.opts.audioSpeed ?? 4;
    const interval = Number.isFinite(speed) && speed > 0 ? chunkMs / speed : 0;
    let off = 0;
    const step = (): void => {
      if (!this.#isLive(r) || this.closed) return;
      do {
        const chunk = audio.subarray(off, off + chunkBytes);
        off += chunkBytes;
        r.outAudioBytes = (r.outAudioBytes ?? 0) + chunk.length;
        if (chunk.length > 0)
          this.send({
            type: "response.output_audio.delta",
            event_id: nextId("event"),
            ...ids,
            content_index: 0,
            delta: chunk.toString("base64"),
          });
      } while (interval === 0 && off < audio.length);
      if (off < audio.length) {
        r.timer = setTimeout(step, interval);
        return;
      }
      this.send({
        type: "response.output_audio.done",
        event_id: nextId("event"),
        ...ids,
        content_index: 0,
      });
      this.send({
        type: "response.output_audio_transcript.done",
        event_id: nextId("event"),
        ...ids,
        content_index: 0,
        transcript,
      });
      this.send({
        type: "response.content_part.done",
        event_id: nextId("event"),
        ...ids,
        content_index: 0,
        part: { type: "audio", transcript },
      });
      const final: ConversationItem = {
        ...item,
        status: "completed",
        content: [{ type: "output_audio", transcript }],
      };
      this.send({
        type: "response.output_item.done",
        event_id: nextId("event"),
        response_id: r.id,
        output_index: 0,
        item: final,
      });
      if (!this.#outOfBand.has(r.id))
        this.send({ type: "conversation.item.done", event_id: nextId("event"), item: final });
      r.output.push(final);
      done();
    };
    step();
  }

  #isLive(r: ActiveResponse): boolean {
    return this.#active === r || this.#outOfBand.get(r.id) === r;
  }

  /**
   * An out-of-band response: speaks the text of the last `input_text` of its `input` (what a reader of that
   * text would say) in `speechAudio(text, voice)` (the response's voice, else the session's), after `replyDelayMs`, at `audioSpeed`. Several may run at once.
   */
  #onOutOfBandCreate(ev: EventOf<"response.create">): void {
    const params = ev.response ?? {};
    let text = "";
    for (const item of params.input ?? [])
      if (item.type === "message")
        for (const part of item.content)
          if (part.type === "input_text" && part.text !== undefined) text = part.text;
    const own = params.audio?.output?.voice;
    const sessionVoice = this.session.audio?.output?.voice;
    const voice = typeof own === "string" ? own : typeof sessionVoice === "string" ? sessionVoice : "marin";
    const audio = this.#server.opts.speechAudio?.(text, voice) ?? this.#server.replyAudio;
    this.#startResponse((r, done) => {
      const delay = this.#server.opts.replyDelayMs ?? 0;
      if (delay > 0) this.#later(delay, () => this.#isLive(r) && this.#speakBody(r, done, text, audio));
      else this.#speakBody(r, done, text, audio);
    }, params);
  }
}

export class FakeRealtimeServer extends EventEmitter<{ connection: [FakeConnection] }> {
  readonly opts: FakeRealtimeOptions;
  readonly connections: FakeConnection[] = [];
  /** Upgrade requests refused (bad key, beta header, wrong path). */
  readonly rejected: { status: number; reason: string }[] = [];
  readonly replyAudio: Buffer;
  readonly #wss: WebSocketServer;
  readonly #turns: FakeTurn[] = [];
  #taken = 0;
  /** The outage in force (see `fault`), or null. */
  faultMode: FakeFault | null = null;
  /** Connection attempts refused (or left silent) by a fault, since the server started. */
  faultAttempts = 0;

  constructor(wss: WebSocketServer, opts: FakeRealtimeOptions) {
    super();
    this.#wss = wss;
    this.opts = opts;
    this.replyAudio = opts.replyAudio ?? tone(400);
  }

  /** `ws://127.0.0.1:PORT/v1/realtime` (the engine appends `?model=`). */
  get url(): string {
    const { port } = this.#wss.address() as AddressInfo;
    return `ws://127.0.0.1:${port}/v1/realtime`;
  }

  /** Queues turns played by the next `response.create`s (any connection), in order. */
  script(...turns: FakeTurn[]): void {
    this.#turns.push(...turns);
  }

  takeTurn(): FakeTurn | undefined {
    return this.#turns.shift();
  }

  /** Resolves with the next connection not yet handed out by this method (waits if needed). */
  nextConnection(timeoutMs = 5000): Promise<FakeConnection> {
    const existing = this.connections[this.#taken];
    if (existing) {
      this.#taken++;
      return Promise.resolve(existing);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("connection", on);
        reject(new Error(`fake realtime: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (c: FakeConnection): void => {
        clearTimeout(timer);
        this.off("connection", on);
        this.#taken++;
        resolve(c);
      };
      this.on("connection", on);
    });
  }

  /**
   * Starts an outage: every connection attempt from now on is refused (`quota`, `bad_key`) or left
   * silent, for as long as it lasts, until `fault(null)`. `dropOpen` also cuts every open socket at once
   * without a close frame, as a network drop does.
   */
  fault(kind: FakeFault | null, opts: { dropOpen?: boolean } = {}): void {
    this.faultMode = kind;
    if (opts.dropOpen) for (const c of this.connections) if (!c.closed) c.drop();
  }

  /** Connections still open. */
  get open(): FakeConnection[] {
    return this.connections.filter((c) => !c.closed);
  }

  /** Terminates every socket and stops listening. */
  async close(): Promise<void> {
    for (const c of this.connections) if (!c.closed) c.drop();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeRealtime(opts: FakeRealtimeOptions = {}): Promise<FakeRealtimeServer> {
  const apiKey = opts.apiKey ?? "sk-test";
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    verifyClient: (info, cb) => {
      const req = info.req;
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const refuse = (status: number, reason: string): void => {
        server.rejected.push({ status, reason });
        cb(false, status, reason);
      };
      if (path !== "/v1/realtime") return refuse(404, "Not Found");
      if (req.headers["openai-beta"] !== undefined)
        return refuse(400, "OpenAI-Beta header is not accepted by the GA API");
      if (req.headers.authorization !== `Bearer ${apiKey}`) return refuse(401, "Unauthorized");
      if (server.faultMode === "unavailable") {
        server.faultAttempts++;
        return refuse(503, "Service Unavailable");
      }
      cb(true);
    },
  });
  const server = new FakeRealtimeServer(wss, opts);
  wss.on("connection", (ws, req) => {
    const conn = new FakeConnection(ws, req, server);
    server.connections.push(conn);
    server.emit("connection", conn);
  });
  await new Promise<void>((resolve, reject) => {
    wss.once("listening", resolve);
    wss.once("error", reject);
  });
  return server;
}
