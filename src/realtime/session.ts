/**
 * One upstream Realtime session (one socket): configuration, event dispatch, native list-tools tracking
 * and failover, client function calls, approvals for both kinds, usage metrics and error handling.
 * It speaks to its owner (a conversation, or the warm pool) through conversation-shaped events.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import { evaluatePolicy } from "../approvals/policy.js";
import type { ApprovalDecision, ApprovalQueue, ApprovalRequest } from "../approvals/queue.js";
import type { Config, McpServerConfig, RequireApproval } from "../config/model.js";
import type { UsageSink } from "../cost/meter.js";
import type { Logger } from "../log.js";
import type { RoutedTool, ToolProvider } from "../mcp/types.js";
import { recordTokenUsage, type Metrics } from "../metrics.js";
import type {
  ConversationEvents,
  ConversationTools,
  ResponseEndReason,
  SpeechOptions,
  TurnEvents,
} from "./conversation.js";
import type { HandledEvent, ServerEventOf } from "./events.js";
import {
  buildSessionUpdate,
  buildToolsUpdate,
  instructionsWithContext,
  turnDetection,
  type TurnMode,
} from "./session-config.js";
import { OutOfBandSpeech } from "./speech.js";
import { UpstreamConnectError, type RealtimeTransport, type TransportClose } from "./transport.js";
import {
  UPSTREAM_MESSAGES,
  UpstreamUnavailableError,
  fromUpstreamError,
  isFatalUpstreamError,
  sessionRejected,
  toUpstreamUnavailable,
} from "./upstream-error.js";

/** What a session needs to know about tools beyond the client provider; the engine implements it. */
export interface ToolCatalog {
  /** Enabled native servers, config order. */
  nativeServers(): readonly McpServerConfig[];
  /** Function tools for a session that has failed over the given native servers. */
  functionTools(failedOver: ReadonlySet<string>): readonly RoutedTool[];
  /** Approval policy of a server by name; unknown servers are `always`. */
  policyOf(server: string): RequireApproval;
  /**
   * Gives a native server a client route (idempotent across sessions). Resolves true once its client
   * tools can be offered, false when it has no route.
   */
  failover(server: string): Promise<boolean>;
}

export type SessionState = "connecting" | "configuring" | "ready" | "active" | "closed";

/** Per native server: `pending` until upstream starts listing its tools. */
export type NativeListState = "pending" | "listing" | "listed" | "failed" | "failed_over";

export interface SessionClose extends TransportClose {
  /** The upstream ended the session at its time limit (close 1001 or `session_expired`). */
  readonly expired: boolean;
  /** We closed it (end of conversation, rotation, shutdown, fatal error). */
  readonly byUs: boolean;
  readonly fatal: boolean;
  /** Why the upstream cannot be used, when `fatal`. */
  readonly error?: UpstreamUnavailableError;
}

/** A client function call that finished after its session closed under it (upstream drop). */
export interface OrphanedCallOutput {
  readonly callId: string;
  readonly name: string;
  readonly arguments: string;
  readonly output: string;
}

export type SessionEvents = Omit<ConversationEvents & TurnEvents, "closed" | "idle"> & {
  /** No response, tool call, approval or user speech in progress: a safe point to rotate. */
  idle: [];
  /** Exactly once, after `open()` resolved or rejected. */
  closed: [SessionClose];
  /**
   * A client function call that was running when the upstream dropped finished: its output belongs in the
   * conversation's next session (`deliverOrphanedOutput`). Only after `closed` with `byUs` false.
   */
  "call.output": [OrphanedCallOutput];
};

export interface SessionOptions {
  readonly openai: Config["openai"];
  readonly tools: ToolProvider;
  readonly catalog: ToolCatalog;
  readonly approvals: ApprovalQueue;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly transport: RealtimeTransport;
  readonly turn: TurnMode;
  readonly context?: string;
  /** With server turn detection: false ends turns without creating a response. Default true. */
  readonly createResponse?: boolean;
  /** `cost.context_tokens` (see `contextTruncation`). */
  readonly contextTokens?: number;
  /** Bound for `session.updated` and every native list-tools outcome. */
  readonly readyTimeoutMs: number;
  /** Bound for the first upstream event after the socket opened (default `readyTimeoutMs`). */
  readonly handshakeTimeoutMs?: number;
  readonly now?: () => number;
}

/** Upstream error codes that are part of normal operation. */
const TOLERATED = new Set([
  "conversation_already_has_active_response",
  "response_cancel_not_active",
  "input_audio_buffer_commit_empty",
]);
const EXPIRY = new Set(["session_expired"]);
/** How long an approved native call may take to show up before we ask for a response to run it. */
const APPROVED_CALL_WAIT_MS = 1500;
/** How long a sent `response.create` may go without its `response.created`. */
const RESPONSE_CREATED_WAIT_MS = 10_000;

interface OpenResponse {
  readonly id: string;
  started: boolean;
  endReason: ResponseEndReason | null;
  /** Native MCP calls of this response that finished, and whether it spoke after the last of them. */
  callsDone: number;
  spokeAfterCall: boolean;
  /** Cancelled by `cancelTurn` before it said anything: none of its events reach the listener. */
  dropped?: boolean;
}

interface NativeCall {
  readonly server: string;
  readonly tool: string;
  readonly startedAt: number;
}

/** A finished `mcp_call` item as the item events carry it. */
interface McpCallItem {
  id: string;
  server_label: string;
  name: string;
  error?: unknown;
  approval_request_id?: string | null;
}

/** Spoken-friendly words for a response that failed before saying anything (DOCS.md lists them). */
export const FAILED_RESPONSE_MESSAGES = {
  busy: "Sorry, the assistant is busy right now. Please try again in a moment.",
  filtered: "Sorry, I can't answer that.",
  tooLong: "Sorry, that answer got too long. Please ask again.",
  other: "Sorry, something went wrong while answering. Please try again.",
} as const;

function failedResponseMessage(
  status: string | undefined,
  reason: string | undefined,
  code: string | undefined,
): string {
  const m = FAILED_RESPONSE_MESSAGES;
  if (code === "rate_limit_exceeded") return m.busy;
  if (status === "incomplete" && reason === "content_filter") return m.filtered;
  if (status === "incomplete" && reason === "max_output_tokens") return m.tooLong;
  return m.other;
}

let eventCounter = 0;
/** Client event ids let the upstream name the request an `error` answers. */
const clientEventId = (kind: string): string => `ov_${kind}_${(++eventCounter).toString(36)}`;

export class RealtimeSession extends EventEmitter<SessionEvents> {
  readonly id = randomUUID();
  readonly #o: SessionOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #abort = new AbortController();
  #state: SessionState = "connecting";
  #openedAt = 0;
  #createResponse: boolean;
  readonly #speech: OutOfBandSpeech;
  #turn: TurnMode;
  #closing = false;
  #expired = false;
  #fatal = false;
  #fatalError: UpstreamUnavailableError | undefined;
  /** The close came from the upstream while client calls ran: they finish and hand their output over. */
  #orphaned = false;
  #closeEmitted = false;
  #stateCounted = false;
  /** Set by the conversation: the device that is asked first for approvals. */
  satelliteId: string | undefined;
  /** Set by the conversation (or the engine, for speech): where this session's usage is priced. */
  usage: UsageSink | undefined;

  readonly #native = new Map<string, NativeListState>();
  readonly #failedOver = new Set<string>();
  readonly #listItems = new Map<string, string>();
  /** `mcp_list_tools.completed|failed` that arrived before their item. */
  readonly #listOutcomes = new Map<string, boolean>();
  /** `event_id` of the opening `session.update`, and of later ones (warned about when rejected). */
  #openingUpdateId: string | null = null;
  readonly #laterUpdateIds = new Set<string>();
  /**
   * `event_id` of our last `response.create`. Kept after a `response.created`: that one may be a response
   * the server started itself, and an `error` naming this id still means ours was refused.
   */
  #responseCreateId: string | null = null;
  #retryRespond: NodeJS.Timeout | undefined;
  /** `event_id` of a `response.create` whose turn was abandoned before its `response.created`. */
  #abandonedRequest: string | null = null;
  /** With server turn detection: a turn was abandoned; a response the upstream starts before new speech answers it. */
  #abandonedServerTurn = false;
  /** Bumped by `cancelTurn`: a client call of an abandoned turn hands its output over without asking for an answer. */
  #turnEpoch = 0;
  #lastToolsJson = "";
  #updated = false;
  /** The upstream has sent something on this socket. */
  #answered = false;
  #readyWaiters: { resolve: () => void; reject: (e: Error) => void } | null = null;

  #response: OpenResponse | null = null;
  #callsInFlight = 0;
  #conversationTools: ConversationTools | null = null;
  #needResponse = false;
  /** A `response.create` was sent and its `response.created` has not arrived yet. */
  #awaitingResponse = false;
  #speaking = false;
  readonly #approvalIds = new Set<string>();
  readonly #seenApprovalRequests = new Set<string>();
  readonly #nativeCalls = new Map<string, NativeCall>();
  /** Call ids whose completion was handled (the API reports it through several events). */
  readonly #finishedCalls = new Set<string>();
  /** Approval requests whose approved `mcp_call` appeared, and the timers waiting for that. */
  readonly #approvedCallsSeen = new Set<string>();
  readonly #approvalFollowUps = new Set<NodeJS.Timeout>();
  /** `response.mcp_call.completed|failed` that arrived before any item of that call. */
  readonly #callOutcomes = new Map<string, boolean>();

  constructor(opts: SessionOptions) {
    super();
    this.#o = opts;
    this.#turn = opts.turn;
    this.#createResponse = opts.createResponse ?? true;
    this.#speech = new OutOfBandSpeech((e) => this.#send(e), opts.metrics);
    this.once("closed", () => this.#speech.failAll("the connection to the assistant ended"));
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger.child({ session: this.id });
    this.#setState("connecting");
  }

  get state(): SessionState {
    return this.#state;
  }

  /** When `open()` connected (engine clock), 0 before. */
  get openedAt(): number {
    return this.#openedAt;
  }

  get turn(): TurnMode {
    return this.#turn;
  }

  /** List-tools state per native server of this session. */
  nativeStates(): ReadonlyMap<string, NativeListState> {
    return this.#native;
  }

  /** The conversation's own tools (`ConversationOptions.tools`); setting them re-sends the tool list. */
  set conversationTools(tools: ConversationTools | null) {
    if (this.#conversationTools === tools) return;
    this.#conversationTools = tools;
    this.refreshTools();
  }

  get isIdle(): boolean {
    return (
      this.#response === null &&
      !this.#awaitingResponse &&
      this.#callsInFlight === 0 &&
      !this.#needResponse &&
      !this.#speaking &&
      this.#approvalIds.size === 0
    );
  }

  /** Client function calls running now. */
  get callsInFlight(): number {
    return this.#callsInFlight;
  }

  /**
   * Connects, configures and waits until the session is usable: `session.updated` received and every
   * native server listed, failed, or failed over. Rejects (and closes) on connect failure, a fatal
   * upstream error, an `error` answering our `session.update`, a close, or no `session.updated` within
   * `readyTimeoutMs`; always with an `UpstreamUnavailableError` that says why in words.
   */
  async open(): Promise<void> {
    const t = this.#o.transport;
    t.onevent = (e) => this.#dispatch(e);
    t.onclose = (info) => this.#onClose(info);
    try {
      await t.connect();
      this.#o.metrics.realtimeConnects.inc({ outcome: "ok" });
    } catch (err) {
      const outcome = err instanceof UpstreamConnectError ? err.outcome : "network";
      this.#o.metrics.realtimeConnects.inc({ outcome });
      this.#setState("closed");
      this.#emitClosed({ code: 1006, reason: err instanceof Error ? err.message : String(err) });
      throw toUpstreamUnavailable(err);
    }
    this.#openedAt = this.#now();
    this.#setState("configuring");
    const native = this.#nativeServers();
    for (const s of native) this.#native.set(s.name, "pending");
    const update = buildSessionUpdate({
      openai: this.#o.openai,
      turn: this.#turn,
      native,
      functions: this.#functionTools(),
      ...(this.#o.context ? { context: this.#o.context } : {}),
      createResponse: this.#createResponse,
      ...(this.#o.contextTokens ? { contextTokens: this.#o.contextTokens } : {}),
    });
    this.#lastToolsJson = JSON.stringify(update.session.type === "realtime" ? update.session.tools : []);
    this.#openingUpdateId = clientEventId("session_update");
    this.#send({ ...update, event_id: this.#openingUpdateId });
    const ready = new Promise<void>((resolve, reject) => {
      this.#readyWaiters = { resolve, reject };
    });
    const timer = setTimeout(() => this.#onReadyTimeout(), this.#o.readyTimeoutMs);
    timer.unref();
    const handshakeMs = this.#o.handshakeTimeoutMs ?? this.#o.readyTimeoutMs;
    // A socket OpenAI keeps open and silent is a refused session.
    const handshake = setTimeout(() => {
      if (!this.#answered)
        this.#readyWaiters?.reject(
          new UpstreamUnavailableError(
            "timeout",
            `${UPSTREAM_MESSAGES.noAnswer} (nothing within ${handshakeMs} ms of connecting)`,
          ),
        );
    }, handshakeMs);
    handshake.unref();
    // A fatal error can arrive in the same read as the upgrade, before this point.
    if (this.#fatalError) this.#readyWaiters?.reject(this.#fatalError);
    try {
      this.#checkReady();
      await ready;
    } catch (err) {
      this.close(1000, "not ready");
      throw toUpstreamUnavailable(err);
    } finally {
      clearTimeout(timer);
      clearTimeout(handshake);
    }
    if (this.#state === "configuring") this.#setState("ready");
  }

  /** Marks the session as serving a conversation. */
  activate(): void {
    if (this.#state === "ready") this.#setState("active");
  }

  /** Adapts a warm session to a conversation: turn mode and carried-over context. */
  configure(opts: { turn: TurnMode; context?: string; createResponse?: boolean }): void {
    const session: Extract<RealtimeClientEvent, { type: "session.update" }>["session"] = { type: "realtime" };
    let changed = false;
    const createResponse = opts.createResponse ?? true;
    if (opts.turn !== this.#turn || createResponse !== this.#createResponse) {
      this.#turn = opts.turn;
      this.#createResponse = createResponse;
      session.audio = {
        input: { turn_detection: turnDetection(opts.turn, this.#o.openai.turn_detection, createResponse) },
      };
      changed = true;
    }
    if (opts.context) {
      session.instructions = instructionsWithContext(this.#o.openai.instructions, opts.context);
      changed = true;
    }
    if (changed) this.#sendLaterUpdate({ type: "session.update", session });
  }

  /** Re-sends the tools when the native list or the client tools changed. */
  refreshTools(): void {
    if (this.#state === "closed" || this.#state === "connecting") return;
    const native = this.#nativeServers();
    const update = buildToolsUpdate(native, this.#functionTools());
    const json = JSON.stringify(update.session.type === "realtime" ? update.session.tools : []);
    if (json === this.#lastToolsJson) return;
    this.#lastToolsJson = json;
    const names = new Set(native.map((s) => s.name));
    for (const name of [...this.#native.keys()])
      if (!names.has(name) && this.#native.get(name) !== "failed_over") this.#native.delete(name);
    for (const name of names) if (!this.#native.has(name)) this.#native.set(name, "pending");
    this.#log.debug({ tools: native.length }, "re-sending session tools");
    this.#sendLaterUpdate(update);
  }

  appendAudio(pcm: Buffer): void {
    if (pcm.length === 0) return;
    this.#send({ type: "input_audio_buffer.append", audio: pcm.toString("base64") });
  }

  commitAndRespond(): void {
    this.#send({ type: "input_audio_buffer.commit" });
    this.#needResponse = true;
    this.#maybeRespond();
  }

  /** Commits the input buffer as a user turn without asking for a response. */
  commit(): void {
    this.#send({ type: "input_audio_buffer.commit" });
  }

  /** Asks for a response to the conversation so far (after running tool calls in flight). */
  respond(): void {
    this.#needResponse = true;
    this.#maybeRespond();
  }

  /** The input transcription's language from now on (an ISO-639-1 code). */
  setTranscriptionLanguage(language: string): void {
    this.#send({
      type: "session.update",
      session: {
        type: "realtime",
        audio: { input: { transcription: { model: this.#o.openai.transcription_model, language } } },
      },
    });
  }

  /** A typed user message, then a response to it. */
  sendText(text: string): void {
    this.#send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    this.respond();
  }

  /**
   * Makes `voice` the session's voice (allowed until the session first speaks) and turns input turn
   * detection off: the session serves out-of-band speech only.
   */
  prepareSpeaker(voice: string): void {
    this.#turn = "client";
    this.#send({
      type: "session.update",
      session: { type: "realtime", audio: { input: { turn_detection: null }, output: { voice } } },
    });
  }

  /**
   * Out-of-band speech (see `SpeechSource.speak`). Runs beside the session's own responses and any other
   * speech; its output enters no conversation.
   */
  speak(text: string, opts: SpeechOptions): Promise<void> {
    if (this.#state === "closed" || this.#closing) return Promise.reject(new Error("the session is closed"));
    return this.#speech.speak(text, opts.voice ?? this.#o.openai.voice, opts);
  }

  cancelResponse(): void {
    if (!this.#response) return;
    this.#response.endReason ??= "cancelled";
    this.#send({ type: "response.cancel" });
  }

  /**
   * The listener abandoned its turn (see `Conversation.cancelTurn`): clears the uncommitted input audio
   * and cancels the response in flight or asked for; one not yet created is cancelled when it is.
   */
  cancelTurn(): void {
    this.#send({ type: "input_audio_buffer.clear" });
    this.#needResponse = false;
    this.#turnEpoch++;
    if (this.#awaitingResponse) this.#abandonedRequest = this.#responseCreateId;
    else if (this.#turn === "server_vad" && !this.#response) this.#abandonedServerTurn = true;
    this.#abandonResponse();
  }

  /** Cancels the response in flight; one that has not spoken yet never reaches the listener. */
  #abandonResponse(): void {
    const r = this.#response;
    if (!r) return;
    if (!r.started) r.dropped = true;
    if (r.endReason !== null) return;
    r.endReason = "cancelled";
    this.#send({ type: "response.cancel", response_id: r.id });
  }

  interrupt(itemId: string, audioEndMs: number): void {
    if (this.#response) {
      this.#response.endReason = "interrupted";
      this.#send({ type: "response.cancel" });
    }
    this.#send({
      type: "conversation.item.truncate",
      item_id: itemId,
      content_index: 0,
      audio_end_ms: Math.max(0, Math.round(audioEndMs)),
    });
  }

  /**
   * Gives this session the output of a call its conversation's previous session started: the call and its
   * output become items here (that session's items are not part of this one), then the model answers.
   */
  deliverOrphanedOutput(o: OrphanedCallOutput): void {
    if (this.#state === "closed") return;
    this.#send({
      type: "conversation.item.create",
      item: { type: "function_call", call_id: o.callId, name: o.name, arguments: o.arguments },
    });
    this.#send({
      type: "conversation.item.create",
      item: { type: "function_call_output", call_id: o.callId, output: o.output },
    });
    this.#needResponse = true;
    this.#maybeRespond();
  }

  /** Stops client calls still running after an upstream drop (their conversation ended). */
  abandonCalls(): void {
    this.#abort.abort();
  }

  /** Closes the upstream socket. Idempotent; `closed` follows once. */
  close(code = 1000, reason = "closing"): void {
    if (this.#closing || this.#state === "closed") return;
    this.#closing = true;
    this.#abort.abort();
    this.#o.approvals.cancel((p) => this.#approvalIds.has(p.id), "The conversation ended.");
    this.#o.transport.close(code, reason);
  }

  #nativeServers(): McpServerConfig[] {
    return this.#o.catalog.nativeServers().filter((s) => !this.#failedOver.has(s.name));
  }

  #functionTools(): readonly RoutedTool[] {
    const base = this.#o.catalog.functionTools(this.#failedOver);
    const own = this.#conversationTools?.tools() ?? [];
    if (own.length === 0) return base;
    const names = new Set(own.map((t) => t.name));
    return [...base.filter((t) => !names.has(t.name)), ...own];
  }

  #sendLaterUpdate(update: Extract<RealtimeClientEvent, { type: "session.update" }>): void {
    const id = clientEventId("session_update");
    this.#laterUpdateIds.add(id);
    this.#send({ ...update, event_id: id });
  }

  /** Emits a conversation `error` only to a listener: an unheard `"error"` would throw. */
  #emitError(e: ConversationEvents["error"][0]): void {
    if (this.listenerCount("error") > 0) this.emit("error", e);
  }

  #send(event: RealtimeClientEvent): void {
    if (!this.#o.transport.send(event))
      this.#log.debug({ type: event.type }, "event dropped: upstream not open");
  }

  #setState(next: SessionState): void {
    const g = this.#o.metrics.realtimeSessions;
    if (this.#stateCounted) g.dec({ state: this.#state });
    this.#state = next;
    this.#stateCounted = next !== "closed";
    if (this.#stateCounted) g.inc({ state: next });
  }

  #dispatch(e: HandledEvent): void {
    this.#answered = true;
    this.#meter(e);
    if (this.#speech.route(e)) return;
    if (e.type === "response.done" && e.response.status === "failed")
      this.emit("response.failed", {
        responseId: e.response.id ?? "",
        message: e.response.status_details?.error?.code ?? e.response.status_details?.error?.type ?? "failed",
      });
    switch (e.type) {
      case "session.created":
        return;
      case "session.updated":
        this.#updated = true;
        return this.#checkReady();
      case "error":
        return this.#onError(e);
      // The API reports an item through `conversation.item.added|done` and, for response output,
      // `response.output_item.added|done`; any of them may be the first we see.
      case "conversation.item.added":
      case "response.output_item.added":
        if (e.item.type === "mcp_list_tools" && e.item.id) this.#onListItem(e.item.id, e.item.server_label);
        else if (e.item.type === "mcp_call")
          this.#onNativeCallStart(e.item.id, e.item.server_label, e.item.name, e.item.approval_request_id);
        return;
      case "conversation.item.done":
      case "response.output_item.done":
        if (e.item.type === "mcp_list_tools" && e.item.id) this.#onListItem(e.item.id, e.item.server_label);
        else if (e.item.type === "mcp_call") this.#onNativeCallItemDone(e.item);
        else if (e.item.type === "mcp_approval_request") void this.#onApprovalRequest(e.item);
        return;
      case "mcp_list_tools.in_progress":
        return;
      case "mcp_list_tools.completed":
        return this.#onListed(e.item_id, true);
      case "mcp_list_tools.failed":
        return this.#onListed(e.item_id, false);
      case "response.mcp_call.in_progress":
        return;
      case "response.mcp_call.completed":
        return this.#onNativeCallOutcome(e.item_id, true);
      case "response.mcp_call.failed":
        return this.#onNativeCallOutcome(e.item_id, false);
      case "response.created": {
        const abandoned = this.#awaitingResponse
          ? this.#abandonedRequest === this.#responseCreateId
          : this.#abandonedServerTurn;
        this.#awaitingResponse = false;
        this.#abandonedRequest = null;
        this.#abandonedServerTurn = false;
        this.#response = {
          id: e.response.id ?? "",
          started: false,
          endReason: null,
          callsDone: 0,
          spokeAfterCall: false,
        };
        // The answer to a turn the listener abandoned while it was being asked for.
        if (abandoned) this.#abandonResponse();
        return;
      }
      case "response.output_audio.delta":
        if (this.#response?.dropped && this.#response.id === e.response_id) return;
        this.#startResponse(e.response_id);
        this.emit("audio", {
          responseId: e.response_id,
          itemId: e.item_id,
          pcm: Buffer.from(e.delta, "base64"),
        });
        return;
      case "response.output_audio_transcript.delta":
        if (this.#response?.dropped && this.#response.id === e.response_id) return;
        this.#startResponse(e.response_id);
        this.emit("transcript", { role: "assistant", text: e.delta, final: false });
        return;
      case "response.output_audio_transcript.done":
        if (this.#response?.dropped && this.#response.id === e.response_id) return;
        this.emit("transcript", { role: "assistant", text: e.transcript, final: true });
        return;
      case "response.done":
        return this.#onResponseDone(e);
      case "response.function_call_arguments.done":
        void this.#runFunctionCall(e.call_id, e.name, e.arguments);
        return;
      case "input_audio_buffer.speech_started":
        this.#abandonedServerTurn = false;
        this.#speaking = true;
        this.emit("speech.started");
        return;
      case "input_audio_buffer.speech_stopped":
        this.#speaking = false;
        this.emit("speech.stopped");
        return;
      case "conversation.item.input_audio_transcription.completed":
        this.emit("user.transcript", { itemId: e.item_id, text: e.transcript });
        this.emit("transcript", { role: "user", text: e.transcript, final: true });
        return this.#emitIdle();
      case "conversation.item.input_audio_transcription.failed":
        this.emit("user.transcript.failed", {
          itemId: e.item_id,
          message: e.error.message ?? e.error.code ?? "transcription failed",
        });
        return;
      case "input_audio_buffer.committed":
        this.emit("input.committed", { itemId: e.item_id });
        return;
    }
  }

  #startResponse(id: string): void {
    const r = this.#response;
    if (!r || r.id !== id) return;
    if (r.callsDone > 0) r.spokeAfterCall = true;
    if (r.started) return;
    r.started = true;
    this.emit("response.start", { id });
  }

  #onResponseDone(e: ServerEventOf<"response.done">): void {
    const res = e.response;
    const r = this.#response;
    this.#response = null;
    const failed = res.status === "failed" || res.status === "incomplete";
    if (r?.started) {
      let reason: ResponseEndReason = "done";
      if (res.status === "cancelled")
        reason =
          r.endReason ?? (res.status_details?.reason === "turn_detected" ? "interrupted" : "cancelled");
      else if (failed) reason = "failed";
      this.emit("response.end", { id: r.id, reason });
    } else if (r && failed && !r.dropped) {
      // Nothing was said: the listener must still hear that this turn is over, and why.
      const details = res.status_details;
      const code = details?.error?.code ?? undefined;
      this.#log.warn({ status: res.status, reason: details?.reason, code }, "upstream response failed");
      this.#o.metrics.errors.inc({ code: "upstream_response_failed" });
      this.#emitError({
        code: "response_failed",
        message: failedResponseMessage(res.status, details?.reason, code),
        fatal: false,
      });
      this.emit("response.end", { id: r.id, reason: "failed" });
    }
    // A native MCP call ran in this response and nothing was said after it: ask the model to speak.
    if (r && r.callsDone > 0 && !r.spokeAfterCall && res.status === "completed") this.#needResponse = true;
    this.#maybeRespond();
    this.#emitIdle();
  }

  /** Sends the one pending `response.create` once no response is active, requested or being prepared. */
  #maybeRespond(): void {
    if (
      !this.#needResponse ||
      this.#callsInFlight > 0 ||
      this.#response !== null ||
      this.#awaitingResponse ||
      this.#state === "closed"
    )
      return;
    this.#needResponse = false;
    this.#awaitingResponse = true;
    const id = clientEventId("response_create");
    this.#responseCreateId = id;
    this.#send({ type: "response.create", event_id: id });
    // Never wait forever for a response.created that does not come: that would block every later one.
    clearTimeout(this.#retryRespond);
    this.#retryRespond = setTimeout(() => {
      if (!this.#awaitingResponse || this.#responseCreateId !== id) return;
      this.#log.warn("no response.created for our response.create; no longer waiting for it");
      this.#awaitingResponse = false;
      this.#maybeRespond();
      this.#emitIdle();
    }, RESPONSE_CREATED_WAIT_MS);
    this.#retryRespond.unref();
  }

  /** Our `response.create` met a response already active: send it again once that one is done. */
  #onResponseBusy(): void {
    // An abandoned turn's request is not sent again (a newer turn's may be waiting: `#needResponse`).
    if (this.#abandonedRequest === null || this.#abandonedRequest !== this.#responseCreateId)
      this.#needResponse = true;
    this.#abandonedRequest = null;
    this.#awaitingResponse = false;
    this.#responseCreateId = null;
    if (this.#response !== null || !this.#needResponse) return; // its response.done sends ours
    // The active response is one we have not heard of yet; try again shortly rather than at once.
    clearTimeout(this.#retryRespond);
    this.#retryRespond = setTimeout(() => this.#maybeRespond(), 250);
    this.#retryRespond.unref();
  }

  /** Every usage, of conversation and out-of-band responses and of input transcription. */
  #meter(e: HandledEvent): void {
    if (e.type === "response.done" && e.response.usage) {
      recordTokenUsage(this.#o.metrics, e.response.usage);
      this.usage?.response(this.#o.openai.model, e.response.usage);
    } else if (e.type === "conversation.item.input_audio_transcription.completed" && e.usage)
      this.usage?.transcription(this.#o.openai.transcription_model, e.usage);
  }

  #emitIdle(): void {
    if (this.isIdle && this.#state !== "closed") this.emit("idle");
  }

  #onError(e: ServerEventOf<"error">): void {
    const code = e.error.code ?? e.error.type;
    const about = e.error.event_id ?? null;
    this.#o.metrics.errors.inc({ code: `upstream_${code}` });
    if (code === "conversation_already_has_active_response") {
      // Ours when it names our last request, or names none while one of ours is outstanding.
      if ((about !== null && about === this.#responseCreateId) || (about === null && this.#awaitingResponse))
        this.#onResponseBusy();
      this.#log.debug({ code }, "upstream error tolerated: response.create queued");
      return;
    }
    if (TOLERATED.has(code)) {
      this.#log.debug({ code }, "upstream error tolerated");
      return;
    }
    if (about !== null && about === this.#responseCreateId && this.#awaitingResponse) {
      // Our response.create was refused for another reason: no response comes; the next turn asks again.
      this.#awaitingResponse = false;
      this.#log.warn({ code, message: e.error.message }, "upstream refused a response.create");
      this.#emitIdle();
      return;
    }
    if (about !== null && about === this.#openingUpdateId && this.#readyWaiters) {
      // The upstream refused our configuration: waiting for session.updated would only time out.
      this.#log.error({ code, message: e.error.message }, "upstream rejected the session configuration");
      this.#fatal = true;
      this.#fatalError = sessionRejected(e.error.message);
      this.#readyWaiters.reject(this.#fatalError);
      this.#readyWaiters = null;
      return;
    }
    if (about !== null && this.#laterUpdateIds.delete(about)) {
      this.#log.warn(
        { code, message: e.error.message },
        "upstream rejected a session update; the session goes on",
      );
      return;
    }
    if (EXPIRY.has(code)) {
      this.#log.info("upstream session expired");
      this.#expired = true;
      // The upstream closes the socket itself; make sure it does not linger.
      const timer = setTimeout(() => this.#o.transport.close(1000, "expired"), 2000);
      timer.unref();
      return;
    }
    if (isFatalUpstreamError(e.error)) {
      this.#log.error({ code, message: e.error.message }, "fatal upstream error");
      this.#fatal = true;
      this.#fatalError = fromUpstreamError(e.error);
      this.#emitError({ code: "upstream_unavailable", message: this.#fatalError.message, fatal: true });
      this.#readyWaiters?.reject(this.#fatalError);
      this.#readyWaiters = null;
      this.close(1000, "fatal error");
      return;
    }
    this.#log.warn({ code, message: e.error.message }, "upstream error");
  }

  // ── native servers ────────────────────────────────────────────────────────────────────────────

  /** The `mcp_list_tools` item of a server, from whichever item event came first. */
  #onListItem(itemId: string, server: string): void {
    if (this.#listItems.has(itemId)) return;
    this.#listItems.set(itemId, server);
    const early = this.#listOutcomes.get(itemId);
    this.#listOutcomes.delete(itemId);
    if (early !== undefined) return this.#onListed(itemId, early);
    if (this.#native.get(server) === "pending") this.#native.set(server, "listing");
  }

  #onListed(itemId: string, ok: boolean): void {
    const server = this.#listItems.get(itemId);
    if (server === undefined) {
      // The outcome came before its item: apply it when the item arrives.
      this.#listOutcomes.set(itemId, ok);
      return;
    }
    if (!this.#native.has(server)) return;
    this.#o.metrics.mcpServerUp.set({ server, mode: "native" }, ok ? 1 : 0);
    if (ok) {
      this.#native.set(server, "listed");
      return this.#checkReady();
    }
    this.#native.set(server, "failed");
    this.#log.warn({ server }, "upstream could not list the tools of a native MCP server");
    void this.#failover(server);
  }

  async #failover(server: string): Promise<void> {
    let moved = false;
    try {
      moved = await this.#o.catalog.failover(server);
    } catch (err) {
      this.#log.warn({ server, err: err instanceof Error ? err.message : String(err) }, "failover failed");
    }
    if (this.#state === "closed") return;
    if (moved) {
      this.#failedOver.add(server);
      this.#native.set(server, "failed_over");
      this.#o.metrics.mcpFailovers.inc({ server });
      this.#log.info({ server }, "native MCP server moved to client mode for this session");
      this.refreshTools();
    }
    this.#checkReady();
  }

  #onReadyTimeout(): void {
    if (!this.#updated) {
      this.#readyWaiters?.reject(
        new UpstreamUnavailableError(
          "timeout",
          `${UPSTREAM_MESSAGES.notConfirmed} (no session.updated within ${this.#o.readyTimeoutMs} ms)`,
        ),
      );
      return;
    }
    for (const [server, st] of this.#native)
      if (st === "pending" || st === "listing") {
        this.#native.set(server, "failed");
        this.#o.metrics.mcpServerUp.set({ server, mode: "native" }, 0);
        this.#log.warn({ server }, "native MCP server not listed in time");
        void this.#failover(server);
      }
  }

  #checkReady(): void {
    if (!this.#readyWaiters || !this.#updated) return;
    for (const st of this.#native.values()) if (st === "pending" || st === "listing") return;
    // A failed server whose failover is still being decided keeps `failed` until #failover settles;
    // we do not wait for it longer than the ready timeout.
    const w = this.#readyWaiters;
    this.#readyWaiters = null;
    w.resolve();
  }

  // ── tool calls and approvals ─────────────────────────────────────────────────────────────────

  async #ask(req: Omit<ApprovalRequest, "satelliteId">, id?: string): Promise<ApprovalDecision> {
    const full: ApprovalRequest = {
      ...req,
      ...(this.satelliteId !== undefined ? { satelliteId: this.satelliteId } : {}),
    };
    const q = this.#o.approvals;
    const { id: approvalId, decision } = q.request(full, id);
    this.#approvalIds.add(approvalId);
    const pending = q.get(approvalId);
    if (pending) this.emit("approval.request", pending);
    try {
      return await decision;
    } finally {
      this.#approvalIds.delete(approvalId);
    }
  }

  async #onApprovalRequest(item: {
    id: string;
    server_label: string;
    name: string;
    arguments: string;
  }): Promise<void> {
    if (this.#seenApprovalRequests.has(item.id)) return;
    this.#seenApprovalRequests.add(item.id);
    const server = item.server_label;
    let d: ApprovalDecision;
    if (evaluatePolicy(this.#o.catalog.policyOf(server), item.name) === "allow") {
      d = { approve: true, source: "policy" };
      // Decisions of the queue are counted by its observer (observeApprovals); policy ones here.
      this.#o.metrics.approvals.inc({ server, decision: "approved", source: "policy" });
    } else {
      try {
        d = await this.#ask({ server, tool: item.name, arguments: item.arguments, mode: "native" }, item.id);
      } catch (err) {
        d = { approve: false, source: "cancelled", reason: err instanceof Error ? err.message : String(err) };
      }
    }
    if (this.#state === "closed") return;
    this.#send({
      type: "conversation.item.create",
      previous_item_id: item.id,
      item: {
        type: "mcp_approval_response",
        id: `apr_${randomUUID().replace(/-/g, "").slice(0, 24)}`,
        approval_request_id: item.id,
        approve: d.approve,
        ...(d.approve ? {} : { reason: d.reason ?? "Not approved." }),
      },
    });
    if (!d.approve) {
      this.emit("tool", { name: item.name, server, status: "failed" });
      this.#needResponse = true;
      this.#maybeRespond();
      return;
    }
    // Some upstreams run the approved call at once, others on the next response.create: ask for one
    // unless the call (or a response carrying it) shows up first.
    const timer = setTimeout(() => {
      this.#approvalFollowUps.delete(timer);
      if (this.#state === "closed" || this.#response !== null || this.#awaitingResponse) return;
      if (this.#approvedCallsSeen.has(item.id)) return;
      this.#needResponse = true;
      this.#maybeRespond();
    }, APPROVED_CALL_WAIT_MS);
    timer.unref();
    this.#approvalFollowUps.add(timer);
  }

  /** An `mcp_call` item seen (added or done): the call started, unless it is known or finished. */
  #onNativeCallStart(id: string, server: string, tool: string, approvalRequestId?: string | null): void {
    if (approvalRequestId) this.#approvedCallsSeen.add(approvalRequestId);
    if (this.#nativeCalls.has(id) || this.#finishedCalls.has(id)) return;
    this.#nativeCalls.set(id, { server, tool, startedAt: this.#now() });
    this.emit("tool", { name: tool, server, status: "started" });
    const early = this.#callOutcomes.get(id);
    if (early !== undefined) this.#finishNativeCall(id, early);
  }

  /** `response.mcp_call.completed|failed`: finishes the call, or waits for its item to name it. */
  #onNativeCallOutcome(id: string, ok: boolean): void {
    if (this.#finishedCalls.has(id)) return;
    if (this.#nativeCalls.has(id)) return this.#finishNativeCall(id, ok);
    this.#callOutcomes.set(id, ok);
  }

  /** A finished `mcp_call` item: its `error` says how it went unless the outcome event said so first. */
  #onNativeCallItemDone(item: McpCallItem): void {
    if (this.#finishedCalls.has(item.id)) return;
    const ok = this.#callOutcomes.get(item.id) ?? (item.error === null || item.error === undefined);
    this.#callOutcomes.set(item.id, ok);
    this.#onNativeCallStart(item.id, item.server_label, item.name, item.approval_request_id);
    if (!this.#finishedCalls.has(item.id)) this.#finishNativeCall(item.id, ok);
  }

  /**
   * Exactly once per call. The model speaks about the result in a response after it: when the call ran in
   * a response, that response's end decides (`#onResponseDone`); otherwise a response is asked for now.
   */
  #finishNativeCall(id: string, ok: boolean): void {
    const call = this.#nativeCalls.get(id);
    if (!call) return;
    this.#nativeCalls.delete(id);
    this.#callOutcomes.delete(id);
    this.#finishedCalls.add(id);
    const { server, tool, startedAt } = call;
    this.#o.metrics.toolCalls.inc({ server, tool, mode: "native", outcome: ok ? "success" : "error" });
    this.#o.metrics.toolCallDuration.observe({ server, mode: "native" }, (this.#now() - startedAt) / 1000);
    this.emit("tool", { name: tool, server, status: ok ? "completed" : "failed" });
    const r = this.#response;
    if (r) {
      r.callsDone++;
      r.spokeAfterCall = false;
      return;
    }
    this.#needResponse = true;
    this.#maybeRespond();
  }

  async #runFunctionCall(callId: string, name: string, args: string): Promise<void> {
    this.#callsInFlight++;
    const epoch = this.#turnEpoch;
    let output: string;
    try {
      const routed = this.#functionTools().find((t) => t.name === name);
      const server = routed?.server ?? "unknown";
      const tool = routed?.tool ?? name;
      const own = this.#conversationTools?.tools().some((t) => t.name === name) === true;
      let allowed = true;
      let denial = "";
      if (routed && !own && evaluatePolicy(this.#o.catalog.policyOf(server), tool) === "ask") {
        const d = await this.#ask({ server, tool, arguments: args, mode: "client" });
        allowed = d.approve;
        denial = d.reason ?? "Not approved.";
      }
      if (!allowed) {
        this.#o.metrics.toolCalls.inc({ server, tool, mode: "client", outcome: "denied" });
        output = JSON.stringify({ error: "not_approved", message: denial });
        this.emit("tool", { name: tool, server, status: "failed" });
      } else {
        // "started" only once it may run: a call waiting for a person is not running yet.
        this.emit("tool", { name: tool, server, status: "started" });
        // One signal per call: the MCP SDK never removes its abort listener, so the session's own
        // signal would collect one per call for the session's lifetime.
        const call = new AbortController();
        const forward = (): void => call.abort();
        this.#abort.signal.addEventListener("abort", forward, { once: true });
        let outcome;
        try {
          outcome = own
            ? await this.#conversationTools!.callTool(name, args)
            : await this.#o.tools.callTool(name, args, { signal: call.signal });
        } finally {
          this.#abort.signal.removeEventListener("abort", forward);
        }
        output = outcome.output;
        this.emit("tool", {
          name: tool,
          server: outcome.server ?? server,
          status: outcome.ok ? "completed" : "failed",
        });
      }
    } catch (err) {
      output = JSON.stringify({
        error: "internal",
        message: err instanceof Error ? err.message : String(err),
      });
    }
    this.#callsInFlight--;
    if (this.#state === "closed") {
      if (this.#orphaned) this.emit("call.output", { callId, name, arguments: args, output });
      return;
    }
    this.#send({
      type: "conversation.item.create",
      item: { type: "function_call_output", call_id: callId, output },
    });
    // The listener abandoned the turn that made this call: its output stays, no answer is asked for.
    if (epoch !== this.#turnEpoch) return this.#emitIdle();
    this.#needResponse = true;
    this.#maybeRespond();
  }

  #onClose(info: TransportClose): void {
    clearTimeout(this.#retryRespond);
    for (const t of this.#approvalFollowUps) clearTimeout(t);
    this.#approvalFollowUps.clear();
    // Client calls outlive an upstream drop: their output goes to the conversation's next session.
    this.#orphaned = !this.#closing && !this.#fatal && this.#callsInFlight > 0;
    if (!this.#orphaned) this.#abort.abort();
    this.#o.approvals.cancel((p) => this.#approvalIds.has(p.id), "The connection to the assistant ended.");
    const r = this.#response;
    this.#response = null;
    if (r?.started) this.emit("response.end", { id: r.id, reason: "failed" });
    this.#readyWaiters?.reject(
      this.#fatalError ??
        new UpstreamUnavailableError(
          "closed",
          `${UPSTREAM_MESSAGES.closedDuringSetup} (${info.code}${info.reason ? ` ${info.reason}` : ""})`,
        ),
    );
    this.#readyWaiters = null;
    this.#setState("closed");
    this.#emitClosed(info);
  }

  #emitClosed(info: TransportClose): void {
    if (this.#closeEmitted) return;
    this.#closeEmitted = true;
    const expired = this.#expired || info.code === 1001;
    this.#log.debug({ code: info.code, expired, byUs: this.#closing }, "upstream session closed");
    this.emit("closed", {
      ...info,
      expired,
      byUs: this.#closing,
      fatal: this.#fatal,
      ...(this.#fatalError ? { error: this.#fatalError } : {}),
    });
  }
}
