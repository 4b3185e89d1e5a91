/**
 * One `SatelliteBridge` per satellite connection: protocol v1 handshake and limits, microphone audio
 * up (resampled to 24 kHz), reply audio down (resampled to the satellite's rate, paced at real time),
 * conversation lifecycle, barge-in, approvals. The socket is behind `SatelliteLink` (the route's
 * `ws` adapter implements it), so this file never imports `ws`.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import type { ApprovalQueue, PendingApproval } from "../approvals/queue.js";
import { SATELLITE_ERRORS, type SatelliteErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type {
  Conversation,
  ConversationEvents,
  ConversationSource,
  ResponseEndReason,
} from "../realtime/conversation.js";
import type { SatelliteAuth, TokenMatch } from "./auth.js";
import { TokenBucket, type SatelliteLimits } from "./limits.js";
import { PlaybackPacer } from "../audio/pacer.js";
import { AudioPipe, PCM_RATE_UPSTREAM } from "./media.js";
import {
  PROTOCOL_VERSION,
  encodeServerMessage,
  errorMessage,
  parseClientMessage,
  type ClientMessage,
  type Hello,
  type SatelliteState,
  type ServerMessage,
} from "./protocol.js";

/** The socket as the bridge sees it. Sends after close are ignored by the implementation. */
export interface SatelliteLink {
  sendText(text: string): void;
  sendBinary(data: Buffer): void;
  /** Bytes accepted by `send*` but not yet written to the OS. */
  readonly bufferedAmount: number;
  ping(): void;
  /** Starts the closing handshake; the link terminates the socket if it is not answered in time. */
  close(code: number, reason: string): void;
  /** Destroys the socket at once. */
  terminate(): void;
}

export interface BridgeDeps {
  conversations: ConversationSource;
  approvals: ApprovalQueue;
  auth: SatelliteAuth;
  logger: Logger;
  metrics: Metrics;
  limits: SatelliteLimits;
  /** `satellites.conversation_idle_s`: a conversation ends after this long without speech. */
  conversationIdleS: number;
  /** Monotonic milliseconds; injectable for tests. */
  now?: () => number;
}

export interface BridgeEvents {
  /** Hello accepted and `session_ready` sent. */
  ready: [{ clientId: string }];
  /** Emitted exactly once, after the socket is gone and the conversation ended. */
  closed: [];
}

type Phase =
  | { status: "awaiting_hello"; timer: NodeJS.Timeout; preAuth: TokenMatch | null }
  | { status: "ready"; hello: Hello; clientId: string; deviceId: string | null }
  | { status: "closed" };

type ConversationSlot =
  | { status: "none"; endedAt: number }
  | {
      status: "starting";
      generation: number;
      mic: Buffer[];
      micBytes: number;
      /** A client-turn `turn.end` arrived before the upstream was ready: commit once it is. */
      turnEnded: boolean;
    }
  | { status: "active"; generation: number; conversation: Conversation; detach: () => void };

interface Reply {
  readonly id: string;
  /** This reply's audio is being pushed to the pacer (it is the head of the queue). */
  playing: boolean;
  /** Milliseconds of this reply pushed to the pacer so far. */
  pushedMs: number;
  /** Audio items of this reply and where each starts in the reply (ms), for `playback.done`. */
  readonly itemStarts: Map<string, number>;
  /** Upstream said the response ended; with `done` the reply ends once its audio is sent. */
  upstreamEnd: ResponseEndReason | null;
  /** `end()` was called on the pacer for this reply; the next drain ends it. */
  finishing: boolean;
  /** 24 kHz audio received before this reply's turn to play (a previous reply is still playing). */
  waiting: { itemId: string; pcm: Buffer }[];
  waitingBytes: number;
}

/** Audio plumbing of a connection past hello. */
interface Media {
  readonly pipe: AudioPipe;
  readonly pacer: PlaybackPacer;
}

/** Replies whose audio is ignored (stopped by barge-in/cancel); bounded. */
const STOPPED_MEMORY = 16;

export class SatelliteBridge extends EventEmitter<BridgeEvents> {
  readonly sessionId = randomUUID();
  readonly #link: SatelliteLink;
  readonly #deps: BridgeDeps;
  readonly #limits: SatelliteLimits;
  readonly #now: () => number;
  #log: Logger;
  #phase: Phase;
  #slot: ConversationSlot = { status: "none", endedAt: -Infinity };
  #generation = 0;
  #state: SatelliteState | null = null;
  readonly #frameBucket: TokenBucket;
  readonly #byteBucket: TokenBucket;
  #badFrames: number[] = [];
  #media: Media | null = null;
  /** Replies in playback order; the head is the one playing. */
  #replies: Reply[] = [];
  readonly #stopped: string[] = [];
  /** End of the user's turn (speech.stopped / turn.end), for turn_first_audio_seconds. */
  #turnEndAt: number | null = null;
  #idleTimer: NodeJS.Timeout | null = null;
  #pingTimer: NodeJS.Timeout | null = null;
  #pongTimer: NodeJS.Timeout | null = null;
  /** Approvals shown on this satellite; pruned when the queue no longer has them. */
  readonly #approvalIds = new Set<string>();
  /** The satellite has reported `playback.done` at least once, so a barge-in waits briefly for it. */
  #reportsPlayback = false;
  #playbackDone: ((playedMs: number) => void) | null = null;
  #droppedOut = 0;
  #closed = false;
  #clientId: string | null = null;

  /**
   * @param connectToken the token from `Authorization: Bearer` or `?token=`, if any. A present but
   *   invalid token closes the socket with `unauthorized` (1008) at once.
   */
  constructor(link: SatelliteLink, deps: BridgeDeps, connectToken?: string) {
    super();
    this.#link = link;
    this.#deps = deps;
    this.#limits = deps.limits;
    this.#now = deps.now ?? (() => performance.now());
    this.#log = deps.logger.child({ satellite_session: this.sessionId });
    const t = this.#now();
    this.#frameBucket = new TokenBucket(this.#limits.framesPerSecond, this.#limits.frameBurst, t);
    this.#byteBucket = new TokenBucket(this.#limits.bytesPerSecond, this.#limits.byteBurst, t);
    const timer = setTimeout(() => this.#fail("hello_timeout"), this.#limits.helloTimeoutMs);
    let preAuth: TokenMatch | null = null;
    this.#phase = { status: "awaiting_hello", timer, preAuth };
    if (connectToken !== undefined) {
      preAuth = deps.auth.verify(connectToken);
      if (preAuth === null) {
        this.#fail("unauthorized");
        return;
      }
      this.#phase = { status: "awaiting_hello", timer, preAuth };
    }
  }

  /** The hello's `client_id` once ready (kept after close). */
  get clientId(): string | null {
    return this.#clientId;
  }

  /** The hello's display `name`, if it gave one. */
  get name(): string | undefined {
    return this.#phase.status === "ready" ? this.#phase.hello.name : undefined;
  }

  get state(): SatelliteState | null {
    return this.#state;
  }

  /** True once the bridge has shut down (`closed` has been or is being emitted). */
  get closed(): boolean {
    return this.#closed;
  }

  // ── inbound ──────────────────────────────────────────────────────────────────────────────

  /** A text frame arrived (`byteLength` is its size on the wire). */
  handleText(text: string, byteLength = Buffer.byteLength(text)): void {
    if (!this.#admit(byteLength)) return;
    const parsed = parseClientMessage(text);
    if (this.#phase.status === "awaiting_hello") {
      if (!parsed.ok)
        return this.#fail(parsed.code === "unsupported_protocol" ? parsed.code : "bad_hello", parsed.message);
      if (parsed.msg.type !== "hello")
        return this.#fail("bad_hello", `expected hello, got ${parsed.msg.type}`);
      return this.#onHello(parsed.msg);
    }
    if (this.#phase.status !== "ready") return;
    if (!parsed.ok) return this.#badFrame("bad_message", parsed.message);
    this.#onMessage(parsed.msg);
  }

  /** A binary frame arrived: microphone PCM16 at the declared input rate. */
  handleBinary(data: Buffer): void {
    if (!this.#admit(data.byteLength)) return;
    if (this.#phase.status === "awaiting_hello") return this.#fail("bad_hello", "binary frame before hello");
    if (this.#phase.status !== "ready") return;
    if (data.byteLength % 2 !== 0)
      return this.#badFrame("bad_audio", `frame of ${data.byteLength} bytes is not whole PCM16 samples`);
    if (data.byteLength === 0) return;
    this.#onMic(data, this.#phase.hello);
  }

  handlePong(): void {
    if (this.#pongTimer !== null) clearTimeout(this.#pongTimer);
    this.#pongTimer = null;
  }

  /** The socket is gone (any reason). Ends the conversation; idempotent. */
  handleClosed(): void {
    void this.#teardown("satellite disconnected");
  }

  /** A bug surfaced while handling this satellite: `internal` error, close 1011; others are unaffected. */
  internalError(err: unknown): void {
    this.#log.error({ err }, "satellite bridge failed");
    this.#fail("internal", "internal error", true);
  }

  /** Server-side end (shutdown, replaced by a newer connection): `session.end`, then close. */
  async end(reason: string, code = 1001): Promise<void> {
    if (this.#closed) return;
    this.#send({ type: "session.end", reason });
    this.#link.close(code, reason);
    await this.#teardown(reason);
  }

  // ── handshake & limits ─────────────────────────────────────────────────────────────────────

  /** Size and rate limits shared by every frame. False when the frame must be ignored. */
  #admit(bytes: number): boolean {
    if (this.#closed) return false;
    if (bytes > this.#limits.maxFrameBytes) {
      this.#fail("frame_too_large", `frame of ${bytes} bytes; the limit is ${this.#limits.maxFrameBytes}`);
      return false;
    }
    const now = this.#now();
    if (!this.#frameBucket.take(1, now) || !this.#byteBucket.take(bytes, now)) {
      this.#fail("rate_limited");
      return false;
    }
    return true;
  }

  #badFrame(code: "bad_message" | "bad_audio", message: string): void {
    const now = this.#now();
    this.#badFrames = this.#badFrames.filter((t) => now - t < this.#limits.badFrameWindowMs);
    this.#badFrames.push(now);
    if (this.#badFrames.length > this.#limits.maxBadFrames) {
      this.#fail(
        code,
        `${message} (more than ${this.#limits.maxBadFrames} bad frames in ${this.#limits.badFrameWindowMs / 1000} s)`,
        true,
      );
      return;
    }
    this.#sendError(code, message);
  }

  #onHello(hello: Hello): void {
    if (this.#phase.status !== "awaiting_hello") return;
    const { timer, preAuth } = this.#phase;
    let match = preAuth;
    if (match === null) {
      if (hello.token === undefined)
        return this.#fail("unauthorized", "no token: use a Bearer header, ?token= or hello.token");
      match = this.#deps.auth.verify(hello.token);
      if (match === null) return this.#fail("unauthorized");
    }
    if (match.kind === "device" && match.deviceId !== hello.client_id)
      return this.#fail("unauthorized", "this token belongs to another device");
    clearTimeout(timer);
    this.#clientId = hello.client_id;
    this.#phase = {
      status: "ready",
      hello,
      clientId: hello.client_id,
      deviceId: match.kind === "device" ? match.deviceId : null,
    };
    this.#log = this.#deps.logger.child({ satellite: hello.client_id, satellite_session: this.sessionId });
    const pacer = new PlaybackPacer((frame) => this.#sendAudio(frame), {
      sampleRate: hello.audio.out.rate,
      maxQueueMs: this.#limits.maxQueuedReplyMs,
    });
    pacer.on("drain", () => this.#onDrain());
    this.#media = { pipe: new AudioPipe(hello.audio.in.rate, hello.audio.out.rate), pacer };
    this.#deps.metrics.satellitesConnected.inc();
    this.#send({
      type: "session_ready",
      protocol: PROTOCOL_VERSION,
      session_id: this.sessionId,
      audio: { in: { rate: hello.audio.in.rate }, out: { rate: hello.audio.out.rate } },
      turn: hello.turn,
    });
    this.#setState("idle");
    this.#startKeepalive();
    this.#log.info({ name: hello.name, audio: hello.audio, turn: hello.turn }, "satellite ready");
    this.emit("ready", { clientId: hello.client_id });
  }

  #startKeepalive(): void {
    this.#pingTimer = setInterval(() => {
      if (this.#pongTimer !== null) return;
      this.#pongTimer = setTimeout(() => {
        this.#log.warn("no pong in time; terminating the socket");
        this.#link.terminate();
        void this.#teardown("keepalive timeout");
      }, this.#limits.pongTimeoutMs);
      this.#link.ping();
    }, this.#limits.pingIntervalMs);
  }

  // ── messages ─────────────────────────────────────────────────────────────────────────────

  #onMessage(msg: ClientMessage): void {
    switch (msg.type) {
      case "hello":
        return this.#badFrame("bad_message", "hello was already received");
      case "turn.start":
        this.#log.debug({ wake_word: msg.wake_word }, "turn.start");
        this.#beginTurn();
        return;
      case "turn.end":
        return this.#onTurnEnd();
      case "cancel":
        this.#log.debug({ reason: msg.reason }, "cancel");
        return this.#stopPlayback("cancelled");
      case "playback.done":
        this.#reportsPlayback = true;
        if (this.#playbackDone !== null) this.#playbackDone(msg.played_ms);
        return;
      case "approval.reply":
        return this.#onApprovalReply(msg.id, msg.approve);
    }
  }

  #onApprovalReply(id: string, approve: boolean): void {
    if (!this.#approvalIds.has(id) || !this.#deps.approvals.answer(id, approve, "satellite")) {
      this.#sendError(
        "approval_unknown",
        `no pending approval ${JSON.stringify(id.slice(0, 64))} for this satellite`,
      );
      return;
    }
    this.#approvalIds.delete(id);
    this.#log.info({ approval: id, approve }, "approval answered on the satellite");
  }

  #onTurnEnd(): void {
    const slot = this.#slot;
    if (slot.status === "none" || this.#phase.status !== "ready") return;
    this.#turnEndAt = this.#now();
    if (this.#phase.hello.turn === "client") {
      if (slot.status === "active") slot.conversation.commitAndRespond();
      else slot.turnEnded = true;
    }
    this.#setState("thinking");
  }

  // ── microphone ───────────────────────────────────────────────────────────────────────────

  #onMic(data: Buffer, hello: Hello): void {
    const slot = this.#slot;
    if (slot.status === "none") {
      if (hello.turn !== "server_vad" || this.#now() - slot.endedAt < this.#limits.restartGuardMs) return;
      this.#beginTurn();
    }
    if (this.#media === null) return;
    const pcm24 = this.#media.pipe.micToUpstream(data);
    if (pcm24.byteLength === 0) return;
    this.#deps.metrics.audioSeconds.inc({ direction: "in" }, data.byteLength / 2 / hello.audio.in.rate);
    const cur = this.#slot;
    if (cur.status === "active") cur.conversation.appendAudio(pcm24);
    else if (cur.status === "starting") {
      cur.mic.push(pcm24);
      cur.micBytes += pcm24.byteLength;
      const maxBytes = (this.#limits.pendingMicMs / 1000) * PCM_RATE_UPSTREAM * 2;
      while (cur.micBytes > maxBytes && cur.mic.length > 1) cur.micBytes -= cur.mic.shift()!.byteLength;
    }
  }

  // ── conversation lifecycle ─────────────────────────────────────────────────────────────────

  /** `turn.start` or speech with server VAD: start a conversation or continue the current one. */
  #beginTurn(): void {
    if (this.#phase.status !== "ready") return;
    if (this.#slot.status === "none") void this.#startConversation(this.#phase.hello, this.#phase.clientId);
    this.#setState("listening");
    this.#armIdle();
  }

  async #startConversation(hello: Hello, clientId: string): Promise<void> {
    const generation = ++this.#generation;
    this.#slot = { status: "starting", generation, mic: [], micBytes: 0, turnEnded: false };
    let conversation: Conversation;
    try {
      conversation = await this.#deps.conversations.start({ turn: hello.turn, satelliteId: clientId });
    } catch (err) {
      if (this.#slot.status !== "starting" || this.#slot.generation !== generation) return;
      // endedAt = now: streamed audio does not retry before restartGuardMs (turn.start does).
      this.#slot = { status: "none", endedAt: this.#now() };
      this.#clearIdle();
      this.#log.warn({ err }, "could not start a conversation");
      this.#sendError("upstream_unavailable", `could not start a conversation: ${errorText(err)}`);
      this.#setState("error");
      this.#setState("idle");
      return;
    }
    const slot = this.#slot;
    if (this.#closed || slot.status !== "starting" || slot.generation !== generation) {
      void conversation.end("satellite gone");
      return;
    }
    const detach = this.#attach(conversation, generation);
    this.#slot = { status: "active", generation, conversation, detach };
    this.#log.info({ conversation: conversation.id }, "conversation started");
    for (const pcm of slot.mic) conversation.appendAudio(pcm);
    if (slot.turnEnded) conversation.commitAndRespond();
    this.#armIdle();
  }

  /**
   * Subscribes to a conversation. Every handler drops events from an older generation, and a
   * handler that throws closes only this satellite (`internal`), never the conversation's emitter.
   */
  #attach(c: Conversation, generation: number): () => void {
    const live = (): boolean => this.#slot.status === "active" && this.#slot.generation === generation;
    const guard =
      <A extends unknown[]>(fn: (...args: A) => void) =>
      (...args: A): void => {
        if (!live()) return;
        try {
          fn(...args);
        } catch (err) {
          this.internalError(err);
        }
      };
    // Typed against ConversationEvents: every event is handled, each with the event's own arguments.
    const on: { [E in keyof ConversationEvents]: (...args: ConversationEvents[E]) => void } = {
      "speech.started": guard(() => this.#onSpeechStarted()),
      "speech.stopped": guard(() => {
        this.#turnEndAt = this.#now();
        this.#setState("thinking");
        this.#armIdle();
      }),
      "response.start": guard(({ id }: { id: string }) => this.#onResponseStart(id)),
      audio: guard((a: { responseId: string; itemId: string; pcm: Buffer }) =>
        this.#onReplyAudio(a.responseId, a.itemId, a.pcm),
      ),
      "response.end": guard(({ id, reason }: { id: string; reason: ResponseEndReason }) =>
        this.#onResponseEnd(id, reason),
      ),
      transcript: guard((t: { role: "user" | "assistant"; text: string; final: boolean }) =>
        this.#send({ type: "transcript", role: t.role, text: t.text, final: t.final }),
      ),
      tool: guard((t: { name: string; server: string; status: "started" | "completed" | "failed" }) =>
        this.#send({ type: "tool", name: t.name, server: t.server, status: t.status }),
      ),
      "approval.request": guard((p: PendingApproval) => this.#onApprovalRequest(p)),
      error: guard((e: { code: string; message: string; fatal: boolean }) => {
        this.#log.warn({ upstream_code: e.code, fatal: e.fatal }, `conversation error: ${e.message}`);
        if (e.fatal) this.#sendError("upstream_unavailable", `${e.code}: ${e.message}`);
      }),
      closed: guard(({ reason }: { reason: string }) => this.#onConversationClosed(reason)),
    };
    const names = Object.keys(on) as (keyof ConversationEvents)[];
    for (const name of names) c.on(name, on[name]);
    return () => {
      for (const name of names) c.off(name, on[name]);
    };
  }

  #onApprovalRequest(p: PendingApproval): void {
    this.#approvalIds.add(p.id);
    const timeout_s = Math.max(0, Math.ceil((p.expiresAt - Date.now()) / 1000));
    this.#send({
      type: "approval.request",
      id: p.id,
      server: p.server,
      tool: p.tool,
      arguments: p.arguments,
      timeout_s,
    });
    this.#armIdle();
  }

  /** The conversation ended by itself (upstream gone, session expired). */
  #onConversationClosed(reason: string): void {
    this.#log.info({ reason }, "conversation closed upstream");
    this.#releaseConversation();
    this.#dropAllReplies();
    this.#setState(reason === "idle" ? "idle" : "error");
    this.#setState("idle");
  }

  #releaseConversation(): Conversation | null {
    const slot = this.#slot;
    this.#clearIdle();
    this.#slot = { status: "none", endedAt: this.#now() };
    if (slot.status !== "active") return null;
    slot.detach();
    return slot.conversation;
  }

  /** (Re)starts the idle clock; it fires only when no reply plays and no approval is pending. */
  #armIdle(): void {
    this.#clearIdle();
    if (this.#slot.status === "none") return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      for (const id of this.#approvalIds)
        if (this.#deps.approvals.get(id) === undefined) this.#approvalIds.delete(id);
      if (this.#replies.length > 0 || this.#approvalIds.size > 0) return this.#armIdle();
      const c = this.#releaseConversation();
      this.#log.info("conversation ended after idle timeout");
      this.#setState("idle");
      if (c !== null) void c.end("idle");
    }, this.#deps.conversationIdleS * 1000);
  }

  #clearIdle(): void {
    if (this.#idleTimer !== null) clearTimeout(this.#idleTimer);
    this.#idleTimer = null;
  }

  // ── replies & playback ─────────────────────────────────────────────────────────────────────
  //
  // Replies play one after another through the connection's pacer: a reply's audio is pushed only
  // once the previous reply has been sent completely (its `response.end` goes out at that moment).

  #onResponseStart(id: string): void {
    if (this.#replyOf(id) !== undefined || this.#stopped.includes(id)) return;
    this.#replies.push({
      id,
      playing: this.#replies.length === 0,
      pushedMs: 0,
      itemStarts: new Map(),
      upstreamEnd: null,
      finishing: false,
      waiting: [],
      waitingBytes: 0,
    });
    this.#send({ type: "response.start", id });
    if (this.#state !== "speaking") this.#setState("thinking");
    this.#clearIdle();
  }

  #replyOf(id: string): Reply | undefined {
    return this.#replies.find((r) => r.id === id);
  }

  #onReplyAudio(responseId: string, itemId: string, pcm: Buffer): void {
    if (this.#stopped.includes(responseId)) return;
    let reply = this.#replyOf(responseId);
    if (reply === undefined) {
      this.#onResponseStart(responseId);
      reply = this.#replyOf(responseId);
      if (reply === undefined) return;
    }
    if (reply.playing) return this.#push(reply, itemId, pcm);
    const maxBytes = (this.#limits.maxQueuedReplyMs / 1000) * PCM_RATE_UPSTREAM * 2;
    if (reply.waitingBytes + pcm.byteLength > maxBytes) return;
    reply.waiting.push({ itemId, pcm });
    reply.waitingBytes += pcm.byteLength;
  }

  /** Resamples 24 kHz audio of the playing reply and queues it on the pacer. */
  #push(reply: Reply, itemId: string, pcm24: Buffer): void {
    const media = this.#media;
    if (media === null) return;
    if (!reply.itemStarts.has(itemId)) reply.itemStarts.set(itemId, reply.pushedMs);
    const out = media.pipe.upstreamToSpeaker(pcm24);
    if (out.length === 0) return;
    const dropped = media.pacer.push(out, itemId);
    if (dropped > 0 && reply.pushedMs < this.#limits.maxQueuedReplyMs)
      this.#log.warn({ response: reply.id }, "reply audio beyond the playback queue limit dropped");
    reply.pushedMs += ((out.length - dropped) * 1000) / media.pipe.outRate;
  }

  #sendAudio(frame: Buffer): void {
    if (this.#closed) return;
    const buffered = this.#link.bufferedAmount;
    if (buffered > this.#limits.sendBufferCloseBytes) {
      this.#fail("slow_consumer", `send buffer at ${buffered} bytes`);
      return;
    }
    if (buffered > this.#limits.sendBufferDropBytes) {
      if (this.#droppedOut++ === 0)
        this.#log.warn({ buffered }, "satellite reads slowly; dropping reply audio");
      return;
    }
    if (this.#turnEndAt !== null) {
      this.#deps.metrics.turnFirstAudio.observe((this.#now() - this.#turnEndAt) / 1000);
      this.#turnEndAt = null;
    }
    if (this.#state !== "speaking") this.#setState("speaking");
    this.#link.sendBinary(frame);
    const rate = this.#media?.pipe.outRate ?? PCM_RATE_UPSTREAM;
    this.#deps.metrics.audioSeconds.inc({ direction: "out" }, frame.byteLength / 2 / rate);
  }

  #onResponseEnd(id: string, reason: ResponseEndReason): void {
    const reply = this.#replyOf(id);
    if (reply === undefined) return; // already ended locally (barge-in/cancel) or never started
    reply.upstreamEnd = reason;
    if (reason === "done" || reason === "failed") {
      if (reply.playing) this.#finish(reply);
      return;
    }
    // Upstream stopped it by itself (e.g. its own VAD interruption): drop what is queued.
    if (reply.playing && this.#media?.pacer.active) {
      this.#send({ type: "playback.clear" });
      this.#media.pacer.clear();
      this.#media.pipe.resetSpeaker();
    }
    this.#endReply(reply, reason);
  }

  /** The playing reply got its upstream end: flush the resampler tail and let the pacer drain. */
  #finish(reply: Reply): void {
    const media = this.#media;
    if (media === null || reply.finishing) return;
    reply.finishing = true;
    const tail = media.pipe.flushSpeaker();
    const lastItem = [...reply.itemStarts.keys()].pop();
    if (tail.length > 0 && lastItem !== undefined) media.pacer.push(tail, lastItem);
    media.pacer.end();
    // `end()` with nothing queued emits no drain: everything is already out.
    if (media.pacer.queuedMs === 0) this.#endReply(reply, reply.upstreamEnd ?? "done");
  }

  #onDrain(): void {
    const head = this.#replies[0];
    if (head?.finishing) this.#endReply(head, head.upstreamEnd ?? "done");
  }

  /** Sends `response.end` once, forgets the reply and starts the next one's playback. */
  #endReply(reply: Reply, reason: ResponseEndReason): void {
    const idx = this.#replies.indexOf(reply);
    if (idx < 0) return;
    this.#replies.splice(idx, 1);
    this.#remember(reply.id);
    this.#send({ type: "response.end", id: reply.id, reason: reason === "failed" ? "cancelled" : reason });
    const next = this.#replies[0];
    if (next !== undefined && !next.playing) {
      next.playing = true;
      const queued = next.waiting.splice(0);
      next.waitingBytes = 0;
      for (const w of queued) this.#push(next, w.itemId, w.pcm);
      if (next.upstreamEnd === "done" || next.upstreamEnd === "failed") this.#finish(next);
      return;
    }
    if (this.#replies.length === 0 && this.#slot.status === "active") {
      if (this.#state === "speaking" || this.#state === "thinking") this.#setState("listening");
      this.#armIdle();
    }
  }

  #remember(id: string): void {
    this.#stopped.push(id);
    if (this.#stopped.length > STOPPED_MEMORY) this.#stopped.shift();
  }

  #onSpeechStarted(): void {
    this.#armIdle();
    if (this.#media?.pacer.active) this.#stopPlayback("interrupted");
    else this.#setState("listening");
  }

  /**
   * Barge-in (`interrupted`) or a satellite `cancel` (`cancelled`): `playback.clear` at once, queued
   * audio dropped, `response.end` for every reply, and the item at the play head truncated upstream
   * at the milliseconds heard — the pacing clock's estimate, or the satellite's own `playback.done`
   * when it arrives within `playbackDoneWaitMs` (only for satellites that have sent one before).
   * Items queued behind it are truncated at 0.
   */
  #stopPlayback(reason: "interrupted" | "cancelled"): void {
    const media = this.#media;
    if (media === null) return;
    this.#send({ type: "playback.clear" });
    const position = media.pacer.clear();
    media.pipe.resetSpeaker();
    const slot = this.#slot;
    const conversation = slot.status === "active" ? slot.conversation : null;
    let headStartMs: number | null = null;
    const unheard: string[] = [];
    let responseInFlight = false;
    for (const reply of this.#replies) {
      for (const [itemId, startMs] of reply.itemStarts)
        if (itemId === position.itemId) headStartMs = startMs;
        else unheard.push(itemId);
      for (const w of reply.waiting) if (!unheard.includes(w.itemId)) unheard.push(w.itemId);
      if (reply.upstreamEnd === null) responseInFlight = true;
    }
    this.#endAll(reason);
    this.#setState("listening");
    if (conversation === null) return;
    const headItem = position.itemId;
    if (headItem === undefined) {
      for (const itemId of unheard) conversation.interrupt(itemId, 0);
      if (unheard.length === 0 && (responseInFlight || reason === "cancelled")) conversation.cancelResponse();
      return;
    }
    const apply = (reported: number | null): void => {
      if (this.#slot.status !== "active" || this.#slot.conversation !== conversation) return;
      const ms =
        reported === null || headStartMs === null
          ? position.playedMs
          : Math.min(Math.max(0, reported - headStartMs), position.sentMs);
      for (const itemId of unheard) conversation.interrupt(itemId, 0);
      conversation.interrupt(headItem, Math.round(ms));
      this.#log.debug({ item: headItem, audio_end_ms: Math.round(ms), reported }, "truncated after barge-in");
    };
    if (!this.#reportsPlayback || this.#limits.playbackDoneWaitMs <= 0) return apply(null);
    const timer = setTimeout(() => {
      this.#playbackDone = null;
      apply(null);
    }, this.#limits.playbackDoneWaitMs);
    this.#playbackDone = (played) => {
      clearTimeout(timer);
      this.#playbackDone = null;
      apply(played);
    };
  }

  /** Drops every reply without touching the upstream (the conversation is gone). */
  #dropAllReplies(): void {
    if (this.#replies.length === 0) return;
    if (this.#media?.pacer.active) this.#send({ type: "playback.clear" });
    this.#media?.pacer.clear();
    this.#media?.pipe.resetSpeaker();
    this.#endAll("cancelled");
  }

  /** `response.end` for every reply, none of them played further. */
  #endAll(reason: "interrupted" | "cancelled"): void {
    const replies = this.#replies;
    this.#replies = [];
    for (const reply of replies) {
      this.#remember(reply.id);
      this.#send({ type: "response.end", id: reply.id, reason });
    }
    this.#armIdle();
  }

  // ── outbound ─────────────────────────────────────────────────────────────────────────────

  #setState(value: SatelliteState): void {
    if (this.#state === value) return;
    this.#state = value;
    this.#send({ type: "state", value });
  }

  #send(msg: ServerMessage): void {
    if (this.#closed) return;
    if (this.#link.bufferedAmount > this.#limits.sendBufferCloseBytes) {
      this.#fail("slow_consumer", `send buffer at ${this.#link.bufferedAmount} bytes`);
      return;
    }
    this.#link.sendText(encodeServerMessage(msg));
  }

  #sendError(code: SatelliteErrorCode, message?: string, fatal?: boolean): void {
    this.#deps.metrics.errors.inc({ code });
    const msg = errorMessage(code, message);
    if (fatal !== undefined) msg.fatal = fatal;
    if (!this.#closed) this.#link.sendText(encodeServerMessage(msg));
  }

  /**
   * Sends a fatal error and closes with the registry's close code (`force` makes a normally
   * non-fatal code fatal, e.g. repeated bad frames).
   */
  #fail(code: SatelliteErrorCode, message?: string, force = false): void {
    if (this.#closed) return;
    this.#log.warn({ code }, message ?? SATELLITE_ERRORS[code].message);
    this.#sendError(code, message, force ? true : undefined);
    this.#link.close(SATELLITE_ERRORS[code].status, code);
    void this.#teardown(code);
  }

  async #teardown(reason: string): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const wasReady = this.#phase.status === "ready";
    if (this.#phase.status === "awaiting_hello") clearTimeout(this.#phase.timer);
    this.#phase = { status: "closed" };
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    if (this.#pongTimer !== null) clearTimeout(this.#pongTimer);
    this.#pingTimer = this.#pongTimer = null;
    this.#playbackDone = null;
    this.#media?.pacer.close();
    this.#replies = [];
    const conversation = this.#releaseConversation();
    this.#generation++;
    if (wasReady) this.#deps.metrics.satellitesConnected.dec();
    if (this.#droppedOut > 0)
      this.#log.warn({ frames: this.#droppedOut }, "reply frames dropped for a slow reader");
    try {
      if (conversation !== null) await conversation.end(reason);
    } catch (err) {
      this.#log.warn({ err }, "conversation end failed");
    }
    this.emit("closed");
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
