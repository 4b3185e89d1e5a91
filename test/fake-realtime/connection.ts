/**
 * One upstream socket of the fake Realtime server with its conversation: items, scripted responses
 * (speech, function calls, native MCP calls and approvals, failures), cancellation and out-of-band
 * responses. Built on the input buffer (`input.ts`) and the socket (`socket.ts`).
 */
import type { IncomingMessage } from "node:http";
import type { WebSocket } from "ws";
import type {
  ConversationItem,
  RealtimeClientEvent,
  RealtimeResponse,
} from "openai/resources/realtime/realtime";
import { SAMPLE_RATE } from "./audio.js";
import { FakeInput } from "./input.js";
import type { FakeTurn } from "./script.js";
import { nextId, type ActiveResponse, type EventOf, type FakeHost } from "./socket.js";
import { textTokens } from "./usage.js";

/** One upstream socket as the fake sees it. */
export class FakeConnection extends FakeInput {
  /** Out-of-band responses (`conversation: "none"`) in flight; any number, beside the in-band one. */
  protected readonly outOfBand = new Map<string, ActiveResponse>();
  protected pendingOutput: { callId: string; output: string } | null = null;
  protected pendingMcpAnswer: string | null = null;
  /** An approved call waiting for `response.create` (`approvedCallRunsOn: "response.create"`). */
  protected approvedCall: { approvalId: string; req: Extract<FakeTurn, { kind: "mcp_approval" }> } | null =
    null;
  protected readonly approvals = new Map<string, Extract<FakeTurn, { kind: "mcp_approval" }>>();

  constructor(ws: WebSocket, req: IncomingMessage, server: FakeHost) {
    super(ws, req, server);
  }

  get responseActive(): boolean {
    return this.active !== null;
  }

  protected override dispatch(ev: RealtimeClientEvent): void {
    switch (ev.type) {
      case "session.update":
        return this.onSessionUpdate(ev);
      case "input_audio_buffer.append":
        return this.onAppend(ev);
      case "input_audio_buffer.commit":
        if (this.buffered === 0)
          return this.error(
            "invalid_request_error",
            "input_audio_buffer_commit_empty",
            "Buffer too small.",
            ev.event_id,
          );
        return this.commit();
      case "input_audio_buffer.clear":
        this.buffered = 0;
        this.turnAudio = [];
        return this.send({ type: "input_audio_buffer.cleared", event_id: nextId("event") });
      case "response.create":
        if (ev.response?.conversation === "none") return this.onOutOfBandCreate(ev);
        return this.respondLater(ev.event_id);
      case "response.cancel":
        if (ev.response_id !== undefined && this.outOfBand.has(ev.response_id))
          return this.outOfBand.get(ev.response_id)?.finish("cancelled", "client_cancelled");
        if (!this.active)
          return this.error(
            "invalid_request_error",
            "response_cancel_not_active",
            "No active response.",
            ev.event_id,
          );
        return this.active.finish("cancelled", "client_cancelled");
      case "conversation.item.create":
        return this.onItemCreate(ev);
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

  protected override onClosed(): void {
    if (this.active?.timer) clearTimeout(this.active.timer);
    for (const r of this.outOfBand.values()) clearTimeout(r.timer);
  }

  protected onItemCreate(ev: EventOf<"conversation.item.create">): void {
    const item = { ...ev.item, id: ev.item.id ?? nextId("item") };
    this.usage.context.text += textTokens(JSON.stringify(ev.item).length);
    this.send({
      type: "conversation.item.added",
      event_id: nextId("event"),
      item,
      previous_item_id: this.lastItemId,
    });
    this.send({
      type: "conversation.item.done",
      event_id: nextId("event"),
      item,
      previous_item_id: this.lastItemId,
    });
    this.lastItemId = item.id;
    if (item.type === "function_call_output")
      this.pendingOutput = { callId: item.call_id, output: item.output };
    if (item.type === "mcp_approval_response") {
      const req = this.approvals.get(item.approval_request_id);
      if (!req)
        return this.error(
          "invalid_request_error",
          "invalid_value",
          "Unknown approval_request_id.",
          ev.event_id,
        );
      this.approvals.delete(item.approval_request_id);
      if (!item.approve) return;
      if (this.server.opts.approvedCallRunsOn === "response.create")
        this.approvedCall = { approvalId: item.approval_request_id, req };
      else this.runMcpCall(item.approval_request_id, req);
    }
  }

  protected runMcpCall(approvalId: string, req: Extract<FakeTurn, { kind: "mcp_approval" }>): void {
    this.startResponse((r, done) => this.playMcpCall(r, done, req, approvalId));
  }

  /**
   * Plays one `mcp_call` in response `r` and finishes it without speaking; the next `response.create`
   * speaks the result. Both orders of the completion event and the item's `.done` events occur.
   */
  protected playMcpCall(
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
    this.addOutputItem(r.id, call);
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
    this.later(10, () => {
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
        this.outputItemDone(r.id, final);
      };
      if (req.order === "item_first") {
        itemDone();
        outcome();
      } else {
        outcome();
        itemDone();
      }
      r.output.push(final);
      this.pendingMcpAnswer = req.fail ? "the tool failed" : (req.output ?? "ok");
      done();
    });
  }

  /** Starts a response on the server's own initiative (as server VAD does), playing `turn`. */
  startServerResponse(turn: FakeTurn): void {
    this.server.script(turn);
    this.onResponseCreate(undefined, true);
  }

  /** `onResponseCreate` after `responseCreatedDelayMs` (a busy upstream), or now. */
  protected respondLater(eventId: string | undefined): void {
    const delay = this.server.opts.responseCreatedDelayMs ?? 0;
    if (delay > 0) this.later(delay, () => this.onResponseCreate(eventId));
    else this.onResponseCreate(eventId);
  }

  protected onResponseCreate(eventId: string | undefined, ownTurn = false): void {
    if (this.active)
      return this.error(
        "invalid_request_error",
        "conversation_already_has_active_response",
        `Conversation already has an active response in progress: ${this.active.id}. Wait until the response is finished before creating a new one.`,
        eventId ?? null,
      );
    if (this.pendingOutput && !ownTurn) {
      const { output } = this.pendingOutput;
      this.pendingOutput = null;
      return this.speak(`The tool said: ${output}`);
    }
    if (this.approvedCall !== null && !ownTurn) {
      const { approvalId, req } = this.approvedCall;
      this.approvedCall = null;
      return this.runMcpCall(approvalId, req);
    }
    if (this.pendingMcpAnswer !== null && !ownTurn) {
      const answer = this.pendingMcpAnswer;
      this.pendingMcpAnswer = null;
      return this.speak(`The tool said: ${answer}`);
    }
    const turn = this.server.takeTurn() ?? { kind: "speak" };
    switch (turn.kind) {
      case "speak":
        return this.speak(turn.transcript, turn.audio);
      case "error":
        return this.error(
          turn.errorType ?? "invalid_request_error",
          turn.code,
          turn.message ?? turn.code,
          eventId ?? null,
        );
      case "silent":
        return;
      case "hang":
        return this.startResponse(() => undefined);
      case "mcp_call":
        return this.startResponse((r, done) => this.playMcpCall(r, done, turn, null));
      case "failed":
        return this.startResponse((r) => {
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
        return this.startResponse((r, done) => {
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
          this.addOutputItem(r.id, item);
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
          this.outputItemDone(r.id, final);
          r.output.push(final);
          done();
        });
      case "mcp_approval":
        return this.startResponse((r, done) => {
          const id = nextId("mcpr");
          const item: ConversationItem = {
            type: "mcp_approval_request",
            id,
            server_label: turn.serverLabel,
            name: turn.name,
            arguments: turn.arguments,
          };
          this.approvals.set(id, turn);
          this.addOutputItem(r.id, item);
          this.outputItemDone(r.id, item);
          r.output.push(item);
          done();
        });
    }
  }

  /** An output item is done: `response.output_item.done`, then (in-band only) `conversation.item.done`. */
  protected outputItemDone(responseId: string, item: ConversationItem): void {
    this.send({
      type: "response.output_item.done",
      event_id: nextId("event"),
      response_id: responseId,
      output_index: 0,
      item,
    });
    if (!this.outOfBand.has(responseId))
      this.send({ type: "conversation.item.done", event_id: nextId("event"), item });
  }

  /** A new output item of response `responseId`: `response.output_item.added` + `conversation.item.added`. */
  protected addOutputItem(responseId: string, item: ConversationItem & { id?: string }): void {
    this.send({
      type: "response.output_item.added",
      event_id: nextId("event"),
      response_id: responseId,
      output_index: 0,
      item,
    });
    // Out-of-band output never enters the conversation.
    if (this.outOfBand.has(responseId)) return;
    this.send({
      type: "conversation.item.added",
      event_id: nextId("event"),
      item,
      previous_item_id: this.lastItemId,
    });
    this.lastItemId = item.id ?? null;
  }

  /**
   * Starts a response; `body` plays it and calls `done()` to finish with status completed. With `outOfBand`
   * (the `response` of an out-of-band `response.create`) it runs beside any other and enters no conversation.
   */
  protected startResponse(
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
          if (!this.outOfBand.delete(id)) return;
        } else if (this.active !== r) return;
        else this.active = null;
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
            usage: this.server.opts.usage ?? this.usage.of(this.session, r, outOfBand !== undefined),
          },
        });
      },
    };
    if (outOfBand) this.outOfBand.set(id, r);
    else this.active = r;
    this.send({
      type: "response.created",
      event_id: nextId("event"),
      response: { ...base(), status: "in_progress", output: [] },
    });
    body(r, () => r.finish("completed"));
  }

  protected speak(
    transcript = this.server.opts.replyTranscript ?? "Sure, done.",
    audio = this.server.replyAudio,
  ): void {
    this.startResponse((r, done) => {
      const delay = this.server.opts.replyDelayMs ?? 0;
      if (delay > 0) this.later(delay, () => this.isLive(r) && this.speakBody(r, done, transcript, audio));
      else this.speakBody(r, done, transcript, audio);
    });
  }

  protected speakBody(r: ActiveResponse, done: () => void, transcript: string, audio: Buffer): void {
    const itemId = nextId("item");
    const item: ConversationItem = {
      type: "message",
      role: "assistant",
      id: itemId,
      status: "in_progress",
      content: [],
    };
    const ids = { response_id: r.id, item_id: itemId, output_index: 0 };
    this.addOutputItem(r.id, item);
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
    const chunkMs = this.server.opts.chunkMs ?? 100;
    const chunkBytes = Math.max(2, Math.round((SAMPLE_RATE * chunkMs) / 1000) * 2);
    const speed = this.server.opts.audioSpeed ?? 4;
    const interval = Number.isFinite(speed) && speed > 0 ? chunkMs / speed : 0;
    let off = 0;
    const step = (): void => {
      if (!this.isLive(r) || this.closed) return;
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
      this.outputItemDone(r.id, final);
      r.output.push(final);
      done();
    };
    step();
  }

  protected isLive(r: ActiveResponse): boolean {
    return this.active === r || this.outOfBand.get(r.id) === r;
  }

  /**
   * An out-of-band response: speaks the text of the last `input_text` of its `input` (what a reader of that
   * text would say) in `speechAudio(text, voice)` (the response's voice, else the session's), after `replyDelayMs`, at `audioSpeed`. Several may run at once.
   */
  protected onOutOfBandCreate(ev: EventOf<"response.create">): void {
    const params = ev.response ?? {};
    let text = "";
    for (const item of params.input ?? [])
      if (item.type === "message")
        for (const part of item.content)
          if (part.type === "input_text" && part.text !== undefined) text = part.text;
    const own = params.audio?.output?.voice;
    const sessionVoice = this.session.audio?.output?.voice;
    const voice = typeof own === "string" ? own : typeof sessionVoice === "string" ? sessionVoice : "marin";
    const audio = this.server.opts.speechAudio?.(text, voice) ?? this.server.replyAudio;
    this.startResponse((r, done) => {
      const delay = this.server.opts.replyDelayMs ?? 0;
      if (delay > 0) this.later(delay, () => this.isLive(r) && this.speakBody(r, done, text, audio));
      else this.speakBody(r, done, text, audio);
    }, params);
  }
}
