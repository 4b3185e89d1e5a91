/**
 * One upstream Realtime session (one socket): opening, event dispatch, error handling and the public
 * API. It speaks to its owner (a conversation, or the warm pool) through conversation-shaped events.
 * Its parts, each in its own file: readiness (`session-ready.ts`), configuration updates
 * (`session-updates.ts`), native tool listing (`native-listing.ts`), native MCP calls (`native-calls.ts`),
 * client function calls (`function-calls.ts`), approvals (`session-approvals.ts`), the response queue
 * (`response-queue.ts`) and what the listener hears of responses (`response-stream.ts`), error matching
 * (`error-match.ts`), out-of-band speech (`speech.ts`) and usage metering (`usage.ts`).
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import type { ApprovalQueue } from "../approvals/queue.js";
import type { Config } from "../config/model.js";
import type { UsageSink } from "../cost/meter.js";
import type { Logger } from "../log.js";
import type { RoutedTool, ToolProvider } from "../mcp/types.js";
import type { Metrics } from "../metrics.js";
import type { ConversationEvents, ConversationTools, SpeechOptions, TurnEvents } from "./conversation.js";
import { errorCode, matchError } from "./error-match.js";
import type { HandledEvent, ServerEventOf } from "./events.js";
import { FunctionCalls, type OrphanedCallOutput } from "./function-calls.js";
import { NativeCalls } from "./native-calls.js";
import { NativeListing, type NativeListState } from "./native-listing.js";
import { ResponseQueue } from "./response-queue.js";
import { ResponseStream } from "./response-stream.js";
import { SessionApprovals } from "./session-approvals.js";
import { ReadyGate } from "./session-ready.js";
import type { TurnMode } from "./session-config.js";
import { SessionUpdates } from "./session-updates.js";
import { OutOfBandSpeech } from "./speech.js";
import type { ToolCatalog } from "./tool-catalog.js";
import { meterUsage } from "./usage.js";
import { UpstreamConnectError, type RealtimeTransport, type TransportClose } from "./transport.js";
import {
  UPSTREAM_MESSAGES,
  UpstreamUnavailableError,
  fromUpstreamError,
  sessionRejected,
  toUpstreamUnavailable,
} from "./upstream-error.js";

export type { NativeListState } from "./native-listing.js";
export type { OrphanedCallOutput } from "./function-calls.js";

export type SessionState = "connecting" | "configuring" | "ready" | "active" | "closed";

export interface SessionClose extends TransportClose {
  /** The upstream ended the session at its time limit (close 1001 or `session_expired`). */
  readonly expired: boolean;
  /** We closed it (end of conversation, rotation, shutdown, fatal error). */
  readonly byUs: boolean;
  readonly fatal: boolean;
  /** Why the upstream cannot be used, when `fatal`. */
  readonly error?: UpstreamUnavailableError;
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

export class RealtimeSession extends EventEmitter<SessionEvents> {
  readonly id = randomUUID();
  readonly #o: SessionOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  #state: SessionState = "connecting";
  #openedAt = 0;
  readonly #speech: OutOfBandSpeech;
  readonly #listing: NativeListing;
  readonly #ready: ReadyGate;
  readonly #updates: SessionUpdates;
  readonly #approvals: SessionApprovals;
  readonly #nativeCalls: NativeCalls;
  readonly #calls: FunctionCalls;
  readonly #responses: ResponseQueue;
  readonly #stream: ResponseStream;
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
  /** The upstream's turn detection heard the user start and not yet stop. */
  #speaking = false;

  constructor(opts: SessionOptions) {
    super();
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger.child({ session: this.id });
    const send = (e: RealtimeClientEvent): void => this.#send(e);
    const closed = (): boolean => this.#state === "closed";
    const tool = (e: ConversationEvents["tool"][0]): void => void this.emit("tool", e);
    const settled = (): void => this.#emitIdle();
    const policyOf = (server: string) => opts.catalog.policyOf(server);
    this.#speech = new OutOfBandSpeech(send, opts.metrics);
    this.once("closed", () => this.#speech.failAll("the connection to the assistant ended"));
    this.#listing = new NativeListing({
      catalog: opts.catalog,
      metrics: opts.metrics,
      log: this.#log,
      closed,
      toolsChanged: () => this.refreshTools(),
      progressed: () => this.#ready.check(),
    });
    this.#updates = new SessionUpdates({
      openai: opts.openai,
      send,
      log: this.#log,
      native: this.#listing,
      functionTools: () => this.#functionTools(),
      turn: opts.turn,
      context: opts.context,
      createResponse: opts.createResponse ?? true,
      contextTokens: opts.contextTokens,
    });
    this.#ready = new ReadyGate({
      readyTimeoutMs: opts.readyTimeoutMs,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? opts.readyTimeoutMs,
      nativeSettled: () => this.#listing.settled,
      nativeTimedOut: () => this.#listing.timeOut(),
    });
    this.#approvals = new SessionApprovals(
      opts.approvals,
      () => this.satelliteId,
      (p) => this.emit("approval.request", p),
    );
    const ask = this.#approvals.ask.bind(this.#approvals);
    this.#calls = new FunctionCalls({
      tools: opts.tools,
      functionTools: () => opts.catalog.functionTools(this.#listing.failedOver),
      policyOf,
      ask,
      metrics: opts.metrics,
      send,
      tool,
      closed,
      orphaned: () => this.#orphaned,
      handOver: (o) => this.emit("call.output", o),
      respond: () => this.#responses.request(),
      settled,
    });
    this.#responses = new ResponseQueue({
      send,
      callsInFlight: () => this.#calls.inFlight,
      closed,
      turn: () => this.#updates.turn,
      log: this.#log,
      settled,
    });
    this.#stream = new ResponseStream({
      queue: this.#responses,
      // The stream emits a subset of SessionEvents, with their own argument types.
      emit: (event, ...args) =>
        void (this.emit.bind(this) as (e: string, ...a: unknown[]) => boolean)(event, ...args),
      error: (e) => this.#emitError(e),
      metrics: opts.metrics,
      log: this.#log,
      settled,
    });
    this.#nativeCalls = new NativeCalls({
      send,
      metrics: opts.metrics,
      now: this.#now,
      policyOf,
      ask,
      tool,
      closed,
      responding: () => this.#responses.current !== null || this.#responses.awaiting,
      respond: () => this.#responses.request(),
      finished: () => this.#responses.nativeCallFinished(),
    });
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
    return this.#updates.turn;
  }

  /** List-tools state per native server of this session. */
  nativeStates(): ReadonlyMap<string, NativeListState> {
    return this.#listing.states();
  }

  /** The conversation's own tools (`ConversationOptions.tools`); setting them re-sends the tool list. */
  set conversationTools(tools: ConversationTools | null) {
    if (this.#calls.setOwn(tools)) this.refreshTools();
  }

  get isIdle(): boolean {
    const r = this.#responses;
    return (
      r.current === null &&
      !r.awaiting &&
      this.#calls.inFlight === 0 &&
      !r.pending &&
      !this.#speaking &&
      this.#approvals.pending === 0
    );
  }

  /** Client function calls running now. */
  get callsInFlight(): number {
    return this.#calls.inFlight;
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
    this.#updates.opening();
    try {
      // A fatal error can arrive in the same read as the upgrade, before this point.
      await this.#ready.wait(this.#fatalError);
    } catch (err) {
      this.close(1000, "not ready");
      throw toUpstreamUnavailable(err);
    }
    if (this.#state === "configuring") this.#setState("ready");
  }

  /** Marks the session as serving a conversation. */
  activate(): void {
    if (this.#state === "ready") this.#setState("active");
  }

  /** Adapts a warm session to a conversation: turn mode and carried-over context. */
  configure(opts: { turn: TurnMode; context?: string; createResponse?: boolean }): void {
    this.#updates.configure(opts);
  }

  /** Re-sends the tools when the native list or the client tools changed. */
  refreshTools(): void {
    if (this.#state === "closed" || this.#state === "connecting") return;
    this.#updates.refreshTools();
  }

  appendAudio(pcm: Buffer): void {
    if (pcm.length === 0) return;
    if (!this.#o.transport.appendAudio(pcm))
      this.#log.debug({ type: "input_audio_buffer.append" }, "event dropped: upstream not open");
  }

  commitAndRespond(): void {
    this.#send({ type: "input_audio_buffer.commit" });
    this.#responses.request();
  }

  /** Commits the input buffer as a user turn without asking for a response. */
  commit(): void {
    this.#send({ type: "input_audio_buffer.commit" });
  }

  /** Asks for a response to the conversation so far (after running tool calls in flight). */
  respond(): void {
    this.#responses.request();
  }

  /** The input transcription's language from now on (an ISO-639-1 code). */
  setTranscriptionLanguage(language: string): void {
    this.#updates.transcriptionLanguage(language);
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
    this.#updates.speaker(voice);
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
    this.#responses.cancel();
  }

  /**
   * The listener abandoned its turn (see `Conversation.cancelTurn`): clears the uncommitted input audio
   * and cancels the response in flight or asked for; one not yet created is cancelled when it is.
   */
  cancelTurn(): void {
    this.#send({ type: "input_audio_buffer.clear" });
    this.#calls.newTurn();
    this.#responses.cancelTurn();
  }

  interrupt(itemId: string, audioEndMs: number): void {
    this.#responses.interrupt();
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
    this.#responses.request();
  }

  /** Stops client calls still running after an upstream drop (their conversation ended). */
  abandonCalls(): void {
    this.#calls.abort();
  }

  /** Closes the upstream socket. Idempotent; `closed` follows once. */
  close(code = 1000, reason = "closing"): void {
    if (this.#closing || this.#state === "closed") return;
    this.#closing = true;
    this.#calls.abort();
    this.#approvals.cancelAll("The conversation ended.");
    this.#o.transport.close(code, reason);
  }

  #functionTools(): readonly RoutedTool[] {
    return this.#calls.offered();
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
    this.#ready.answered();
    meterUsage(e, this.#o.metrics, this.usage, this.#o.openai);
    if (this.#speech.route(e)) return;
    if (this.#stream.route(e)) return;
    const calls = this.#nativeCalls;
    switch (e.type) {
      case "session.created":
        return;
      case "session.updated":
        return this.#ready.updated();
      case "error":
        return this.#onError(e);
      // The API reports an item through `conversation.item.added|done` and, for response output,
      // `response.output_item.added|done`; any of them may be the first we see.
      case "conversation.item.added":
      case "response.output_item.added":
        if (e.item.type === "mcp_list_tools" && e.item.id)
          this.#listing.onItem(e.item.id, e.item.server_label);
        else if (e.item.type === "mcp_call")
          calls.onCallSeen(e.item.id, e.item.server_label, e.item.name, e.item.approval_request_id);
        return;
      case "conversation.item.done":
      case "response.output_item.done":
        if (e.item.type === "mcp_list_tools" && e.item.id)
          this.#listing.onItem(e.item.id, e.item.server_label);
        else if (e.item.type === "mcp_call") calls.onItemDone(e.item);
        else if (e.item.type === "mcp_approval_request") void calls.onApprovalRequest(e.item);
        return;
      case "mcp_list_tools.in_progress":
        return;
      case "mcp_list_tools.completed":
        return this.#listing.onListed(e.item_id, true);
      case "mcp_list_tools.failed":
        return this.#listing.onListed(e.item_id, false);
      case "response.mcp_call.in_progress":
        return;
      case "response.mcp_call.completed":
        return calls.onOutcome(e.item_id, true);
      case "response.mcp_call.failed":
        return calls.onOutcome(e.item_id, false);
      case "response.function_call_arguments.done":
        void this.#calls.run(e.call_id, e.name, e.arguments);
        return;
      case "input_audio_buffer.speech_started":
        this.#responses.onSpeechStarted();
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

  #emitIdle(): void {
    if (this.isIdle && this.#state !== "closed") this.emit("idle");
  }

  #onError(e: ServerEventOf<"error">): void {
    const code = errorCode(e.error);
    const { message } = e.error;
    this.#o.metrics.errors.inc({ code: `upstream_${code}` });
    const match = matchError(e.error, {
      responseCreateId: this.#responses.lastRequestId,
      awaitingResponse: this.#responses.awaiting,
      openingUpdateId: this.#updates.openingId,
      configuring: this.#ready.waiting,
      laterUpdateIds: this.#updates.laterIds,
    });
    switch (match.kind) {
      case "busy":
        if (match.ours) this.#responses.onBusy();
        this.#log.debug({ code }, "upstream error tolerated: response.create queued");
        return;
      case "tolerated":
        this.#log.debug({ code }, "upstream error tolerated");
        return;
      case "response_refused":
        // No response comes; the next turn asks again.
        this.#responses.onRefused();
        this.#log.warn({ code, message }, "upstream refused a response.create");
        return this.#emitIdle();
      case "config_rejected":
        // Waiting for session.updated would only time out.
        this.#log.error({ code, message }, "upstream rejected the session configuration");
        this.#fatal = true;
        this.#fatalError = sessionRejected(message);
        this.#ready.fail(this.#fatalError);
        return;
      case "update_rejected":
        this.#updates.refused(e.error.event_id ?? "");
        this.#log.warn({ code, message }, "upstream rejected a session update; the session goes on");
        return;
      case "expired": {
        this.#log.info("upstream session expired");
        this.#expired = true;
        // The upstream closes the socket itself; make sure it does not linger.
        const timer = setTimeout(() => this.#o.transport.close(1000, "expired"), 2000);
        timer.unref();
        return;
      }
      case "fatal":
        this.#log.error({ code, message }, "fatal upstream error");
        this.#fatal = true;
        this.#fatalError = fromUpstreamError(e.error);
        this.#emitError({ code: "upstream_unavailable", message: this.#fatalError.message, fatal: true });
        this.#ready.fail(this.#fatalError);
        this.close(1000, "fatal error");
        return;
      case "other":
        this.#log.warn({ code, message }, "upstream error");
        return;
    }
  }

  #onClose(info: TransportClose): void {
    this.#nativeCalls.close();
    // Client calls outlive an upstream drop: their output goes to the conversation's next session.
    this.#orphaned = !this.#closing && !this.#fatal && this.#calls.inFlight > 0;
    if (!this.#orphaned) this.#calls.abort();
    this.#approvals.cancelAll("The connection to the assistant ended.");
    const r = this.#responses.close();
    if (r?.started) this.emit("response.end", { id: r.id, reason: "failed" });
    this.#ready.fail(
      this.#fatalError ??
        new UpstreamUnavailableError(
          "closed",
          `${UPSTREAM_MESSAGES.closedDuringSetup} (${info.code}${info.reason ? ` ${info.reason}` : ""})`,
        ),
    );
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
