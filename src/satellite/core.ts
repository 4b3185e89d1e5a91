/**
 * The wire-agnostic satellite core: one per connected device past its handshake. It owns the
 * conversation lifecycle, reply playback (resampling, real-time pacing, response boundaries),
 * barge-in, approvals shown on the device and the idle timer. It knows no wire format: a wire
 * adapter (`wires/*`) turns frames into the core's intents (its public methods) and the core's
 * events into frames.
 *
 * Intents: `startTurn`, `endTurn`, `cancel`, `audioIn`, `played`, `answerApproval`, `close`.
 * Events ({@link CoreEvents}): `state`, `speech.start`, `response.start`, `response.end`, `audio`, `clear`,
 * `transcript`, `tool`, `approval`, `error`, `end`. Events are emitted synchronously, in the order
 * the satellite must see them; none is emitted after `close()`. The wire must listen to `error`
 * (an `EventEmitter` throws an unheard `error`).
 */
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import type { PendingApproval } from "../approvals/queue.js";
import { PlaybackPacer } from "../audio/pacer.js";
import { LimitError, type SatelliteErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { Conversation, ConversationEvents, ResponseEndReason } from "../realtime/conversation.js";
import { subscribe } from "../subscribe.js";
import { ShownApprovals } from "./approvals-shown.js";
import type { CoreDeps, CoreEvents, CoreSession, SatelliteState, TurnMode } from "./events.js";
import { IdleClock } from "./idle-clock.js";
import type { SatelliteLimits } from "./limits.js";
import { AudioPipe, PCM_RATE_UPSTREAM } from "./media.js";
import { ReplyBook, type Reply } from "./replies.js";

export type {
  ApprovalOutcome,
  ApprovalPrompt,
  CoreDeps,
  CoreEvents,
  CoreSession,
  ReplyEndReason,
  SatelliteState,
  TurnMode,
} from "./events.js";

type ConversationSlot =
  | { status: "none"; endedAt: number }
  | {
      status: "starting";
      generation: number;
      mic: Buffer[];
      micBytes: number;
      /** A client-turn `endTurn` arrived before the upstream was ready: commit once it is. */
      turnEnded: boolean;
    }
  | { status: "active"; generation: number; conversation: Conversation; detach: () => void };

export class SatelliteCore extends EventEmitter<CoreEvents> {
  readonly #deps: CoreDeps;
  readonly #session: CoreSession;
  readonly #limits: SatelliteLimits;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #pipe: AudioPipe;
  /** `audio_seconds_total` by direction, bound once: a frame adds to it without hashing labels. */
  readonly #audioSeconds: CoreDeps["metrics"]["audioSecondsBy"];
  readonly #pacer: PlaybackPacer;
  #slot: ConversationSlot = { status: "none", endedAt: -Infinity };
  #generation = 0;
  #state: SatelliteState = "idle";
  /** Replies in playback order; the head is the one playing. */
  readonly #replies = new ReplyBook();
  /** End of the user's turn (speech stopped / `endTurn`), for turn_first_audio_seconds. */
  #turnEndAt: number | null = null;
  /** When microphone audio last arrived (monotonic ms): a client turn that streams is not idle. */
  #lastMicAt = Number.NEGATIVE_INFINITY;
  readonly #idle: IdleClock;
  /** Tool calls of the current conversation between `started` and `completed`/`failed`. */
  #toolsRunning = 0;
  /** Approvals shown on this satellite and still pending; each leaves with an `approval.done`. */
  readonly #approvals: ShownApprovals;
  /** The satellite has reported `played` at least once, so a barge-in waits briefly for it. */
  #reportsPlayback = false;
  #playbackDone: ((playedMs: number) => void) | null = null;
  #droppedOut = 0;
  #closed = false;

  constructor(deps: CoreDeps, session: CoreSession, logger: Logger) {
    super();
    this.#deps = deps;
    this.#session = session;
    this.#limits = deps.limits;
    this.#now = deps.now ?? (() => performance.now());
    this.#log = logger;
    this.#pipe = new AudioPipe(session.audio.inRate, session.audio.outRate);
    this.#audioSeconds = deps.metrics.audioSecondsBy;
    this.#pacer = new PlaybackPacer((frame) => this.#sendAudio(frame), {
      sampleRate: session.audio.outRate,
      maxQueueMs: this.#limits.maxQueuedReplyMs,
      ...(session.leadMs === undefined ? {} : { leadMs: session.leadMs }),
    });
    this.#pacer.on("drain", () => this.#onDrain());
    this.#approvals = new ShownApprovals(deps.approvals, (done) => this.#emit("approval.done", done));
    this.#idle = new IdleClock({
      delayMs: deps.conversationIdleS * 1000,
      busy: () => this.#busy(),
      onIdle: () => this.#onIdle(),
    });
  }

  /** Starts `idle`; every change is emitted as `state`. */
  get state(): SatelliteState {
    return this.#state;
  }

  get turn(): TurnMode {
    return this.#session.turn;
  }

  /** A reply is playing or queued (a `response.start` has not had its `response.end` yet). */
  get replying(): boolean {
    return this.#replies.size > 0;
  }

  /** A conversation is starting or running. */
  get inConversation(): boolean {
    return this.#slot.status !== "none";
  }

  // ── intents ──────────────────────────────────────────────────────────────────────────────

  /**
   * Wake word heard / button pressed: start a conversation or continue the current one. With
   * `turn: "client"` a new push-to-talk abandons the previous turn: its reply stops (`cancelled`), its
   * answer is cancelled upstream even before it has started, and audio not yet committed is dropped.
   */
  startTurn(): void {
    if (this.#closed) return;
    if (this.#slot.status === "none") void this.#startConversation();
    else if (this.#session.turn === "client") {
      if (this.#replies.size > 0) this.#stopPlayback("cancelled");
      this.#abandonTurn();
    }
    this.#setState("listening");
    this.#armIdle();
  }

  /** The device ended the user's turn (with `turn: "client"`: commit and ask for a reply). */
  endTurn(): void {
    const slot = this.#slot;
    if (this.#closed || slot.status === "none") return;
    this.#turnEndAt = this.#now();
    if (this.#session.turn === "client") {
      if (slot.status === "active") slot.conversation.commitAndRespond();
      else slot.turnEnded = true;
    }
    this.#setState("thinking");
    this.#armIdle();
  }

  /**
   * Stop the reply and drop the turn: `clear`, `response.end` reason `cancelled` for every reply, the
   * answer cancelled upstream (also one not yet started) and the microphone audio not yet committed
   * dropped, so the next question is heard alone.
   */
  cancel(): void {
    if (this.#closed) return;
    this.#stopPlayback("cancelled");
    this.#abandonTurn();
  }

  /**
   * Microphone audio, PCM16 LE at the input rate, even and non-empty (the wire checks). With server
   * VAD, audio outside a conversation starts one (not within `restartGuardMs` of an idle end); audio
   * that arrives while the upstream is being set up is kept (up to `pendingMicMs`) and sent once ready.
   */
  audioIn(pcm: Buffer): void {
    if (this.#closed) return;
    const slot = this.#slot;
    if (slot.status === "none") {
      if (this.#session.turn !== "server_vad" || this.#now() - slot.endedAt < this.#limits.restartGuardMs)
        return;
      this.startTurn();
    }
    this.#lastMicAt = this.#now();
    const pcm24 = this.#pipe.micToUpstream(pcm);
    if (pcm24.byteLength === 0) return;
    this.#audioSeconds.in.inc(pcm.byteLength / 2 / this.#pipe.inRate);
    const cur = this.#slot;
    if (cur.status === "active") cur.conversation.appendAudio(pcm24);
    else if (cur.status === "starting") {
      cur.mic.push(Buffer.from(pcm24)); // the pipe reuses its output; kept audio is a copy
      cur.micBytes += pcm24.byteLength;
      const maxBytes = (this.#limits.pendingMicMs / 1000) * PCM_RATE_UPSTREAM * 2;
      while (cur.micBytes > maxBytes && cur.mic.length > 1) cur.micBytes -= cur.mic.shift()!.byteLength;
    }
  }

  /** How much of the last reply the speaker really played (ms); refines truncation after barge-in. */
  played(playedMs: number): void {
    this.#reportsPlayback = true;
    if (this.#playbackDone !== null) this.#playbackDone(playedMs);
  }

  /** A person answered an approval on the device; an unknown id emits `error` `approval_unknown`. */
  answerApproval(id: string, approve: boolean): void {
    if (this.#closed) return;
    if (!this.#approvals.answer(id, approve)) {
      this.#error(
        "approval_unknown",
        `no pending approval ${JSON.stringify(id.slice(0, 64))} for this satellite`,
      );
      return;
    }
    this.#log.info({ approval: id, approve }, "approval answered on the satellite");
  }

  /** The device is gone: playback stops and the conversation ends. Idempotent; no event follows. */
  async close(reason: string): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#pipe.dispose();
    this.#approvals.close();
    this.#playbackDone = null;
    this.#pacer.close();
    this.#replies.drop();
    const conversation = this.#releaseConversation();
    this.#generation++;
    if (this.#droppedOut > 0)
      this.#log.warn({ frames: this.#droppedOut }, "reply frames dropped for a slow reader");
    try {
      if (conversation !== null) await conversation.end(reason);
    } catch (err) {
      this.#log.warn({ err }, "conversation end failed");
    }
  }

  /** Drops the turn's audio not yet committed (here and upstream) and its answer. */
  #abandonTurn(): void {
    const slot = this.#slot;
    if (slot.status === "active") slot.conversation.cancelTurn();
    else if (slot.status === "starting") {
      slot.mic = [];
      slot.micBytes = 0;
      slot.turnEnded = false;
    }
  }

  // ── conversation lifecycle ─────────────────────────────────────────────────────────────────

  async #startConversation(): Promise<void> {
    const generation = ++this.#generation;
    this.#slot = { status: "starting", generation, mic: [], micBytes: 0, turnEnded: false };
    let conversation: Conversation;
    try {
      conversation = await this.#deps.conversations.start({
        turn: this.#session.turn,
        satelliteId: this.#session.satelliteId,
        ...(this.#session.device ? { device: this.#session.device } : {}),
      });
    } catch (err) {
      if (this.#slot.status !== "starting" || this.#slot.generation !== generation) return;
      // endedAt = now: streamed audio does not retry before restartGuardMs (startTurn does).
      this.#slot = { status: "none", endedAt: this.#now() };
      this.#idle.clear();
      this.#log.warn({ err }, "could not start a conversation");
      if (err instanceof LimitError) this.#error(err.code, err.message);
      // An UpstreamUnavailableError's message is already the reason in words ("OpenAI quota exceeded").
      else this.#error("upstream_unavailable", upstreamReason(err));
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
          this.#log.error({ err }, "satellite core failed");
          this.#error("internal", "internal error", true);
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
        this.#emit("transcript", { role: t.role, text: t.text, final: t.final }),
      ),
      tool: guard((t: { name: string; server: string; status: "started" | "completed" | "failed" }) => {
        this.#onTool(t.status);
        this.#emit("tool", { name: t.name, server: t.server, status: t.status });
      }),
      "approval.request": guard((p: PendingApproval) => this.#onApprovalRequest(p)),
      error: guard((e: { code: string; message: string; fatal: boolean }) => {
        this.#log.warn({ upstream_code: e.code, fatal: e.fatal }, `conversation error: ${e.message}`);
        if (e.fatal) this.#error("upstream_unavailable", e.message);
        else if (e.code === "response_failed") this.#error("response_failed", e.message);
      }),
      closed: guard(({ reason }: { reason: string }) => this.#onConversationClosed(reason)),
    };
    return subscribe(c, on);
  }

  /** A running tool keeps the conversation alive; the idle clock starts over when the last one ends. */
  #onTool(status: "started" | "completed" | "failed"): void {
    if (status === "started") {
      this.#toolsRunning++;
      return;
    }
    this.#toolsRunning = Math.max(0, this.#toolsRunning - 1);
    if (this.#toolsRunning === 0) this.#armIdle();
  }

  #onApprovalRequest(p: PendingApproval): void {
    const prompt = this.#approvals.show(p);
    if (prompt === undefined) return; // already settled
    this.#emit("approval", prompt);
    this.#armIdle();
  }

  /** The conversation ended by itself (upstream gone, session expired). */
  #onConversationClosed(reason: string): void {
    this.#log.info({ reason }, "conversation closed upstream");
    this.#releaseConversation();
    this.#dropAllReplies();
    // A turn that held no speech ends as quietly as an idle conversation: nothing went wrong.
    if (reason !== "idle" && reason !== "no_speech") this.#setState("error");
    this.#setState("idle");
    this.#emit("end", { reason });
  }

  #releaseConversation(): Conversation | null {
    const slot = this.#slot;
    this.#idle.clear();
    this.#toolsRunning = 0;
    this.#slot = { status: "none", endedAt: this.#now() };
    if (slot.status !== "active") return null;
    slot.detach();
    return slot.conversation;
  }

  /** (Re)starts the idle clock; it fires only when no reply plays, no tool runs and no approval is pending. */
  #armIdle(): void {
    this.#idle.clear();
    if (this.#slot.status !== "none") this.#idle.arm();
  }

  #busy(): boolean {
    this.#approvals.prune();
    if (this.#replies.size > 0 || this.#approvals.size > 0 || this.#toolsRunning > 0) return true;
    // Push-to-talk held open: the device streams its microphone, with no upstream VAD to say so.
    return (
      this.#session.turn === "client" &&
      this.#state === "listening" &&
      this.#now() - this.#lastMicAt < this.#deps.conversationIdleS * 1000
    );
  }

  #onIdle(): void {
    const c = this.#releaseConversation();
    this.#log.info("conversation ended after idle timeout");
    this.#setState("idle");
    this.#emit("end", { reason: "idle" });
    if (c !== null) void c.end("idle");
  }

  // ── replies & playback ─────────────────────────────────────────────────────────────────────
  //
  // Replies play one after another through the connection's pacer: a reply's audio is pushed only
  // once the previous reply has been sent completely (its `response.end` goes out at that moment).

  #onResponseStart(id: string): Reply | undefined {
    const reply = this.#replies.start(id);
    if (reply === undefined) return undefined;
    this.#emit("response.start", { id });
    if (this.#state !== "speaking") this.#setState("thinking");
    this.#idle.clear();
    return reply;
  }

  #onReplyAudio(responseId: string, itemId: string, pcm: Buffer): void {
    if (this.#replies.ended(responseId)) return;
    const reply = this.#replies.get(responseId) ?? this.#onResponseStart(responseId);
    if (reply === undefined) return;
    if (reply.playing) return this.#push(reply, itemId, pcm);
    this.#replies.hold(reply, itemId, pcm, (this.#limits.maxQueuedReplyMs / 1000) * PCM_RATE_UPSTREAM * 2);
  }

  /** Resamples 24 kHz audio of the playing reply and queues it on the pacer. */
  #push(reply: Reply, itemId: string, pcm24: Buffer): void {
    if (!reply.itemStarts.has(itemId)) reply.itemStarts.set(itemId, reply.pushedMs);
    const out = this.#pipe.upstreamToSpeaker(pcm24);
    if (out.length === 0) return;
    const dropped = this.#pacer.push(out, itemId);
    if (dropped > 0 && reply.pushedMs < this.#limits.maxQueuedReplyMs)
      this.#log.warn({ response: reply.id }, "reply audio beyond the playback queue limit dropped");
    reply.pushedMs += ((out.length - dropped) * 1000) / this.#pipe.outRate;
  }

  /** A frame from the pacer: dropped while the wire's send buffer is full, fatal far beyond. */
  #sendAudio(frame: Buffer): void {
    if (this.#closed) return;
    const buffered = this.#session.sendBuffer();
    if (buffered > this.#limits.sendBufferCloseBytes) {
      this.#error("slow_consumer", `send buffer at ${buffered} bytes`, true);
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
    this.#emit("audio", frame);
    this.#audioSeconds.out.inc(frame.byteLength / 2 / this.#pipe.outRate);
  }

  #onResponseEnd(id: string, reason: ResponseEndReason): void {
    let reply = this.#replies.get(id);
    // Failed before saying anything: the device still gets the reply's start and end, then idle.
    if (reply === undefined && reason === "failed") reply = this.#onResponseStart(id);
    if (reply === undefined) return; // already ended locally (barge-in/cancel) or never started
    reply.upstreamEnd = reason;
    if (reason === "done" || reason === "failed") {
      if (reply.playing) this.#finish(reply);
      return;
    }
    // Upstream stopped it by itself (e.g. its own VAD interruption): drop what is queued.
    if (reply.playing && this.#pacer.active) {
      this.#emit("clear");
      this.#pacer.clear();
      this.#pipe.resetSpeaker();
    }
    this.#endReply(reply, reason);
  }

  /** The playing reply got its upstream end: flush the resampler tail and let the pacer drain. */
  #finish(reply: Reply): void {
    if (reply.finishing) return;
    reply.finishing = true;
    const tail = this.#pipe.flushSpeaker();
    const lastItem = [...reply.itemStarts.keys()].pop();
    if (tail.length > 0 && lastItem !== undefined) this.#pacer.push(tail, lastItem);
    this.#pacer.end();
    // `end()` with nothing queued emits no drain: everything is already out.
    if (this.#pacer.queuedMs === 0) this.#endReply(reply, reply.upstreamEnd ?? "done");
  }

  #onDrain(): void {
    const head = this.#replies.head;
    if (head?.finishing) this.#endReply(head, head.upstreamEnd ?? "done");
  }

  /** Emits `response.end` once, forgets the reply and starts the next one's playback. */
  #endReply(reply: Reply, reason: ResponseEndReason): void {
    if (!this.#replies.end(reply)) return;
    this.#emit("response.end", { id: reply.id, reason });
    const next = this.#replies.promote();
    if (next !== undefined) {
      for (const w of next.held) this.#push(next.reply, w.itemId, w.pcm);
      if (next.reply.upstreamEnd === "done" || next.reply.upstreamEnd === "failed") this.#finish(next.reply);
      return;
    }
    if (this.#replies.size === 0 && this.#slot.status === "active") {
      if (reason === "failed") {
        this.#setState("error");
        this.#setState("idle");
      } else if (this.#state === "speaking" || this.#state === "thinking") this.#setState("listening");
      this.#armIdle();
    }
  }

  #onSpeechStarted(): void {
    this.#emit("speech.start");
    this.#armIdle();
    if (this.#pacer.active) this.#stopPlayback("interrupted");
    else this.#setState("listening");
  }

  /**
   * Barge-in (`interrupted`) or a device cancel (`cancelled`): `clear` at once, queued audio
   * dropped, `response.end` for every reply, and the item at the play head truncated upstream at
   * the milliseconds heard — the pacing clock's estimate, or the device's own `played` report when
   * it arrives within `playbackDoneWaitMs` (only for devices that have reported before).
   * Items queued behind it are truncated at 0.
   */
  #stopPlayback(reason: "interrupted" | "cancelled"): void {
    this.#emit("clear");
    const position = this.#pacer.clear();
    this.#pipe.resetSpeaker();
    const slot = this.#slot;
    const conversation = slot.status === "active" ? slot.conversation : null;
    const { headStartMs, unheard, responseInFlight } = this.#replies.snapshot(position.itemId);
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
    if (this.#replies.size === 0) return;
    if (this.#pacer.active) this.#emit("clear");
    this.#pacer.clear();
    this.#pipe.resetSpeaker();
    this.#endAll("cancelled");
  }

  /** `response.end` for every reply, none of them played further. */
  #endAll(reason: "interrupted" | "cancelled"): void {
    for (const reply of this.#replies.endAll()) this.#emit("response.end", { id: reply.id, reason });
    this.#armIdle();
  }

  // ── outbound ─────────────────────────────────────────────────────────────────────────────

  #setState(value: SatelliteState): void {
    if (this.#state === value || this.#closed) return;
    this.#state = value;
    this.#emit("state", value);
  }

  /** Every event goes out here: nothing is emitted once the core is closed. */
  #emit<E extends keyof CoreEvents>(event: E, ...args: CoreEvents[E]): void {
    if (this.#closed) return;
    (this.emit as (event: E, ...args: CoreEvents[E]) => boolean)(event, ...args);
  }

  #error(code: SatelliteErrorCode, message: string, close = false): void {
    if (this.#closed) return;
    this.#emit("error", { code, message, close });
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The words to tell a device why no conversation could start. */
function upstreamReason(err: unknown): string {
  if (err instanceof Error && (err as { code?: unknown }).code === "upstream_unavailable") return err.message;
  return `could not start a conversation: ${errorText(err)}`;
}
