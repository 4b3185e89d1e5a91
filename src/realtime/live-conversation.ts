/**
 * A `Conversation` over one upstream session at a time. It survives upstream drops and expiry by
 * reconnecting with backoff and carrying a summary of the recent transcripts into the new session, and
 * it rotates to a fresh session proactively, between turns, before the upstream's time limit.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { DeviceRef } from "../cost/budget.js";
import type { CostAccount } from "../cost/meter.js";
import { SpeechGate } from "../audio/speech-gate.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type {
  AssistConversation,
  ConversationEvents,
  ConversationOptions,
  TurnEvents,
} from "./conversation.js";
import { HeldTurn } from "./held-turn.js";
import type { TranscriptTurn } from "./session-config.js";
import { TranscriptMemory } from "./transcript-memory.js";
import type { OrphanedCallOutput, RealtimeSession, SessionClose } from "./session.js";
import { UPSTREAM_MESSAGES, toUpstreamUnavailable, type UpstreamFailureKind } from "./upstream-error.js";
import { subscribe } from "../subscribe.js";

/** Where a conversation gets its (next) upstream session; the engine implements it. */
export interface SessionSource {
  acquire(opts: {
    turn: ConversationOptions["turn"];
    context?: string;
    satelliteId?: string;
    createResponse?: boolean;
  }): Promise<RealtimeSession>;
}

export interface ConversationLimits {
  readonly sessionMaxMs: number;
  readonly rotateBeforeMs: number;
  /** Waits before each reconnect attempt; the attempt count is its length. */
  readonly reconnectDelaysMs: readonly number[];
}

type Link =
  | { status: "attached"; session: RealtimeSession; gen: number; detach: () => void }
  | { status: "reconnecting"; gen: number }
  | { status: "ended" };

/** Longest a rotated-out session is kept for a barge-in into its last reply. */
const RETIRE_MAX_MS = 30_000;
/** Reconnect failures that retrying soon cannot mend: the listener is told at once. */
const REFUSALS: ReadonlySet<UpstreamFailureKind> = new Set(["auth", "quota", "config", "silent"]);

export class LiveConversation extends EventEmitter<ConversationEvents> implements AssistConversation {
  readonly id: string;
  readonly turns = new EventEmitter<TurnEvents>();
  readonly #source: SessionSource;
  readonly #opts: ConversationOptions;
  readonly #limits: ConversationLimits;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #now: () => number;
  readonly #onEnd: (c: LiveConversation) => void;
  readonly #usage: CostAccount | undefined;
  /** Whether the current client turn held speech. */
  readonly #gate = new SpeechGate();
  /** Recent transcripts and reply items, carried into the next session. */
  readonly #memory: TranscriptMemory<RealtimeSession>;
  #link: Link = { status: "reconnecting", gen: 0 };
  #gen = 0;
  #openResponse: string | null = null;
  #rotateTimer: NodeJS.Timeout | undefined;
  #rotation: Promise<RealtimeSession | null> | null = null;
  #nextSession: RealtimeSession | null = null;
  #endReason: string | null = null;
  /** Sessions that dropped while client calls ran, until those calls finish (see `#adoptOrphans`). */
  readonly #orphans = new Map<RealtimeSession, () => void>();
  /** Outputs of such calls waiting for the next session. */
  readonly #pendingOutputs: OrphanedCallOutput[] = [];
  /** The session rotated out while its last reply may still be playing: barge-in truncates there. */
  #retired: { session: RealtimeSession; timer: NodeJS.Timeout } | null = null;
  /** What the listener said while reconnecting, for the next session. */
  readonly #held = new HeldTurn();
  /** Ends the current reconnect backoff early (the listener is talking). */
  #wake: (() => void) | null = null;

  constructor(deps: {
    source: SessionSource;
    session: RealtimeSession;
    opts: ConversationOptions;
    limits: ConversationLimits;
    logger: Logger;
    metrics: Metrics;
    now: () => number;
    onEnd: (c: LiveConversation) => void;
    usage?: CostAccount;
    id?: string;
  }) {
    super();
    this.id = deps.id ?? randomUUID();
    this.#source = deps.source;
    this.#opts = deps.opts;
    this.#limits = deps.limits;
    this.#metrics = deps.metrics;
    this.#now = deps.now;
    this.#onEnd = deps.onEnd;
    this.#usage = deps.usage;
    this.#memory = new TranscriptMemory(deps.now);
    this.#log = deps.logger.child({ conversation: this.id });
    this.#attach(deps.session);
  }

  /** The upstream session currently serving this conversation (undefined while reconnecting/ended). */
  get session(): RealtimeSession | undefined {
    return this.#link.status === "attached" ? this.#link.session : undefined;
  }

  /** Final transcripts kept for carry-over, oldest first. */
  get history(): readonly TranscriptTurn[] {
    return this.#memory.history;
  }

  /**
   * While reconnecting, audio and requests are held (audio up to 10 s) and replayed into the next
   * session; they also cut the reconnect backoff short, and if that attempt fails the listener is told
   * at once (`error` `upstream_unavailable`, then `closed`) instead of waiting for an answer.
   */
  appendAudio(pcm: Buffer): void {
    if (this.#link.status === "ended") return;
    // Only a client turn asks whether it held speech (`commitAndRespond`); the upstream's VAD judges the rest.
    if (this.#opts.turn === "client") this.#gate.push(pcm);
    if (this.#link.status === "attached") return this.#link.session.appendAudio(pcm);
    this.#held.audio(pcm);
    this.#wake?.();
  }

  /** A turn whose audio was all silence asks for no response: the conversation ends (`no_speech`). */
  commitAndRespond(): void {
    if (this.#link.status === "ended") return;
    if (this.#gate.take() === "silent") {
      this.#log.info("the turn held no speech; no answer asked for");
      void this.end("no_speech");
      return;
    }
    this.#command((s) => s.commitAndRespond());
  }

  /** Runs `fn` on the session now, or holds it for the next one while reconnecting. */
  #command(fn: (s: RealtimeSession) => void): void {
    if (this.#link.status === "attached") return fn(this.#link.session);
    if (this.#link.status !== "reconnecting") return;
    this.#held.step(fn);
    this.#wake?.();
  }

  cancelResponse(): void {
    if (this.#link.status === "attached") this.#link.session.cancelResponse();
  }

  /** While reconnecting, what was held is dropped: the next session starts with an empty buffer. */
  cancelTurn(): void {
    this.#held.clear();
    if (this.#link.status === "attached") this.#link.session.cancelTurn();
  }

  /**
   * Truncates against the session that owns the item (a rotated-out session keeps its last reply's items)
   * and keeps only what was heard of that reply in the history carried to later sessions.
   */
  interrupt(itemId: string, audioEndMs: number): void {
    if (this.#link.status !== "attached") return;
    const current = this.#link.session;
    const owner = this.#memory.ownerOf(itemId);
    if (owner && owner !== current) {
      // Never truncate an item in a session that does not have it.
      if (this.#retired?.session === owner) owner.interrupt(itemId, audioEndMs);
      // The summary the current session was given may hold the whole reply: send what was heard.
      if (this.#memory.trimHeard(itemId, audioEndMs)) {
        const context = this.#memory.context();
        if (context) current.configure({ turn: current.turn, context });
      }
      this.#closeRetired();
      return;
    }
    current.interrupt(itemId, audioEndMs);
    this.#memory.trimHeard(itemId, audioEndMs);
  }

  end(reason: string): Promise<void> {
    if (this.#link.status === "ended") return Promise.resolve();
    const link = this.#link;
    this.#link = { status: "ended" };
    this.#endReason = reason;
    clearTimeout(this.#rotateTimer);
    if (link.status === "attached") {
      link.detach();
      link.session.close(1000, "conversation ended");
    }
    this.#nextSession?.close(1000, "conversation ended");
    this.#nextSession = null;
    this.#closeRetired();
    for (const [session, stop] of this.#orphans) {
      stop();
      session.abandonCalls();
    }
    this.#orphans.clear();
    this.#pendingOutputs.length = 0;
    this.#held.clear();
    this.#wake?.();
    if (this.#openResponse !== null) {
      this.emit("response.end", { id: this.#openResponse, reason: "cancelled" });
      this.#openResponse = null;
    }
    this.#log.debug({ reason }, "conversation ended");
    this.#onEnd(this);
    this.emit("closed", { reason });
    return Promise.resolve();
  }

  #attach(session: RealtimeSession): void {
    const gen = ++this.#gen;
    const live = (): boolean => this.#link.status === "attached" && this.#link.gen === gen;
    session.satelliteId = this.#opts.satelliteId;
    session.usage = this.#usage;
    session.conversationTools = this.#opts.tools ?? null;
    session.activate();
    const on = {
      speechStarted: () => live() && this.emit("speech.started"),
      speechStopped: () => live() && this.emit("speech.stopped"),
      responseStart: (e: { id: string }) => {
        if (!live()) return;
        // A new reply: the rotated-out session's last one is over for the listener.
        this.#closeRetired();
        this.#openResponse = e.id;
        this.emit("response.start", e);
      },
      audio: (e: ConversationEvents["audio"][0]) => {
        if (!live()) return;
        this.#memory.noteAudio(session, e.itemId, e.pcm.length);
        this.emit("audio", e);
      },
      responseEnd: (e: ConversationEvents["response.end"][0]) => {
        if (!live()) return;
        if (this.#openResponse === e.id) this.#openResponse = null;
        this.emit("response.end", e);
      },
      transcript: (e: ConversationEvents["transcript"][0]) => {
        if (!live()) return;
        if (e.final) this.#memory.remember(e.role, e.text);
        this.emit("transcript", e);
      },
      tool: (e: ConversationEvents["tool"][0]) => live() && this.emit("tool", e),
      approval: (e: ConversationEvents["approval.request"][0]) => live() && this.emit("approval.request", e),
      error: (e: ConversationEvents["error"][0]) => {
        if (!live()) return;
        this.#emitError(e);
        if (e.fatal) void this.end("upstream_unavailable");
      },
      idle: () => live() && this.#onIdle(),
      closed: (info: SessionClose) => live() && this.#onSessionClosed(info),
    };
    session.on("speech.started", on.speechStarted);
    session.on("speech.stopped", on.speechStopped);
    session.on("response.start", on.responseStart);
    session.on("audio", on.audio);
    session.on("response.end", on.responseEnd);
    session.on("transcript", on.transcript);
    session.on("tool", on.tool);
    session.on("approval.request", on.approval);
    session.on("error", on.error);
    session.on("idle", on.idle);
    session.on("closed", on.closed);
    const detachTurns = this.#forwardTurnEvents(session, live);
    const detach = (): void => {
      detachTurns();
      session.off("speech.started", on.speechStarted);
      session.off("speech.stopped", on.speechStopped);
      session.off("response.start", on.responseStart);
      session.off("audio", on.audio);
      session.off("response.end", on.responseEnd);
      session.off("transcript", on.transcript);
      session.off("tool", on.tool);
      session.off("approval.request", on.approval);
      session.off("error", on.error);
      session.off("idle", on.idle);
      session.off("closed", on.closed);
    };
    this.#link = { status: "attached", session, gen, detach };
    this.#scheduleRotation(session);
    for (const o of this.#pendingOutputs.splice(0)) session.deliverOrphanedOutput(o);
    this.#held.replay(session);
  }

  /** Emits `error` only to a listener: an unheard `"error"` event would throw. */
  #emitError(e: ConversationEvents["error"][0]): void {
    if (this.listenerCount("error") > 0) this.emit("error", e);
  }

  /**
   * Client calls of a dropped session keep running; their `tool` events still reach the listener and
   * their outputs go to the session that serves the conversation next (now, or once reconnected).
   */
  #adoptOrphans(session: RealtimeSession): void {
    if (session.callsInFlight === 0 || this.#orphans.has(session)) return;
    const onTool = (e: ConversationEvents["tool"][0]): void => void this.emit("tool", e);
    const onOutput = (o: OrphanedCallOutput): void => {
      this.#log.info({ tool: o.name }, "a tool call outlived its upstream session; handing its result over");
      if (this.#link.status === "attached") this.#link.session.deliverOrphanedOutput(o);
      else this.#pendingOutputs.push(o);
      if (session.callsInFlight === 0) stop();
    };
    const stop = (): void => {
      session.off("tool", onTool);
      session.off("call.output", onOutput);
      this.#orphans.delete(session);
    };
    session.on("tool", onTool);
    session.on("call.output", onOutput);
    this.#orphans.set(session, stop);
  }

  /** Keeps a rotated-out session until its last reply can have finished playing (at most 30 s). */
  #retire(session: RealtimeSession): void {
    this.#closeRetired();
    const playing = this.#memory.playingFor(session);
    if (playing <= 0) return void session.close(1000, "rotated");
    const timer = setTimeout(() => this.#closeRetired(), Math.min(RETIRE_MAX_MS, playing + 1500));
    timer.unref();
    this.#retired = { session, timer };
  }

  #closeRetired(): void {
    const r = this.#retired;
    if (!r) return;
    this.#retired = null;
    clearTimeout(r.timer);
    r.session.close(1000, "rotated");
  }

  #acquireOpts(): {
    turn: ConversationOptions["turn"];
    context?: string;
    satelliteId?: string;
    createResponse?: boolean;
  } {
    const context = this.#memory.context();
    return {
      ...(this.#opts.createResponse !== undefined ? { createResponse: this.#opts.createResponse } : {}),
      turn: this.#opts.turn,
      ...(context ? { context } : {}),
      ...(this.#opts.satelliteId !== undefined ? { satelliteId: this.#opts.satelliteId } : {}),
    };
  }

  // ── rotation ──────────────────────────────────────────────────────────────────────────────────

  #scheduleRotation(session: RealtimeSession): void {
    clearTimeout(this.#rotateTimer);
    const due = session.openedAt + this.#limits.sessionMaxMs - this.#limits.rotateBeforeMs - this.#now();
    this.#rotateTimer = setTimeout(() => this.#startRotation(), Math.max(0, due));
    this.#rotateTimer.unref();
  }

  /** Prepares the next session in the background; the swap waits for a quiet moment. */
  #startRotation(): void {
    if (this.#link.status !== "attached" || this.#rotation) return;
    this.#log.debug("rotating the upstream session before its time limit");
    const rotation = this.#source.acquire(this.#acquireOpts()).then(
      (next) => {
        if (this.#link.status === "ended") {
          next.close(1000, "conversation ended");
          return null;
        }
        this.#nextSession = next;
        if (this.#link.status === "attached" && this.#link.session.isIdle) this.#swap();
        return next;
      },
      (err: unknown) => {
        this.#log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "rotation failed; will retry",
        );
        this.#rotation = null;
        if (this.#link.status === "attached") {
          this.#rotateTimer = setTimeout(
            () => this.#startRotation(),
            this.#limits.reconnectDelaysMs.at(-1) ?? 1000,
          );
          this.#rotateTimer.unref();
        }
        return null;
      },
    );
    this.#rotation = rotation;
  }

  #onIdle(): void {
    if (this.#nextSession) this.#swap();
  }

  #swap(): void {
    const next = this.#nextSession;
    if (!next || this.#link.status !== "attached") return;
    this.#nextSession = null;
    this.#rotation = null;
    const old = this.#link;
    old.detach();
    this.#retire(old.session);
    this.#metrics.realtimeSessionRotations.inc();
    this.#log.info("upstream session rotated");
    this.#attach(next);
  }

  // ── reconnect ─────────────────────────────────────────────────────────────────────────────────

  #onSessionClosed(info: SessionClose): void {
    if (this.#link.status !== "attached") return;
    this.#link.detach();
    if (info.byUs || info.fatal) {
      void this.end(info.fatal ? "upstream_unavailable" : "closed");
      return;
    }
    this.#log.info({ code: info.code, expired: info.expired }, "upstream session ended; reconnecting");
    this.#adoptOrphans(this.#link.session);
    void this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    const gen = ++this.#gen;
    this.#link = { status: "reconnecting", gen };
    clearTimeout(this.#rotateTimer);
    if (this.#openResponse !== null) {
      this.emit("response.end", { id: this.#openResponse, reason: "failed" });
      this.#openResponse = null;
    }
    const stillMine = (): boolean => this.#link.status === "reconnecting" && this.#link.gen === gen;
    // A rotation already under way is the quickest way back.
    const rotated = this.#nextSession ?? (this.#rotation ? await this.#rotation : null);
    this.#rotation = null;
    this.#nextSession = null;
    if (rotated && rotated.state !== "closed") {
      if (!stillMine()) return void rotated.close(1000, "conversation ended");
      this.#metrics.realtimeReconnects.inc();
      this.#attach(rotated);
      return;
    }
    let lastError: string = UPSTREAM_MESSAGES.failed;
    for (const delay of this.#limits.reconnectDelaysMs) {
      if (delay > 0 && !this.#held.waiting) await this.#backoff(delay);
      if (!stillMine()) return;
      try {
        const session = await this.#source.acquire(this.#acquireOpts());
        if (!stillMine()) return void session.close(1000, "conversation ended");
        this.#metrics.realtimeReconnects.inc();
        this.#log.info("conversation carried over to a new upstream session");
        this.#attach(session);
        return;
      } catch (err) {
        const why = toUpstreamUnavailable(err);
        lastError = why.message;
        this.#log.warn({ err: lastError }, "reconnect attempt failed");
        // Told now: the upstream refuses us (key, quota, configuration), or the listener is waiting.
        if (REFUSALS.has(why.kind) || this.#held.waiting) break;
      }
    }
    if (!stillMine()) return;
    this.#emitError({ code: "upstream_unavailable", message: lastError, fatal: true });
    await this.end("upstream_unavailable");
  }

  /** Waits `ms` before the next reconnect attempt, or until the listener talks (`#wake`). */
  #backoff(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.#wake = done;
    });
  }

  // ── assist turns ──────────────────────────────────────────────────────────────────────────────

  commit(): void {
    this.#command((s) => s.commit());
  }

  respond(): void {
    this.#command((s) => s.respond());
  }

  setInputLanguage(language: string): void {
    const code = language.split(/[-_]/)[0]?.toLowerCase();
    if (this.#link.status === "attached" && code && /^[a-z]{2}$/.test(code))
      this.#link.session.setTranscriptionLanguage(code);
  }

  sendText(text: string): void {
    if (this.#link.status === "ended") return;
    this.#memory.remember("user", text);
    this.#command((s) => s.sendText(text));
  }

  /** Forwards the session's `TurnEvents` while `live()`; returns the function that stops it. */
  #forwardTurnEvents(session: RealtimeSession, live: () => boolean): () => void {
    const committed = (e: TurnEvents["input.committed"][0]): void => {
      if (live()) this.turns.emit("input.committed", e);
    };
    const transcript = (e: TurnEvents["user.transcript"][0]): void => {
      if (live()) this.turns.emit("user.transcript", e);
    };
    const failed = (e: TurnEvents["user.transcript.failed"][0]): void => {
      if (live()) this.turns.emit("user.transcript.failed", e);
    };
    const responseFailed = (e: TurnEvents["response.failed"][0]): void => {
      if (live()) this.turns.emit("response.failed", e);
    };
    const idle = (): void => {
      if (live()) this.turns.emit("idle");
    };
    // Runs after this conversation's own `closed` handler (which detaches): `live()` is already false.
    const lost = (info: SessionClose): void => {
      if (!info.byUs && this.#link.status !== "ended") this.turns.emit("upstream.lost");
    };
    return subscribe(session, {
      "input.committed": committed,
      "user.transcript": transcript,
      "user.transcript.failed": failed,
      "response.failed": responseFailed,
      idle,
      closed: lost,
    });
  }

  prependHistory(turns: readonly TranscriptTurn[]): void {
    if (turns.length === 0) return;
    this.#memory.prepend(turns);
    if (this.#link.status !== "attached") return;
    const context = this.#memory.context();
    this.#link.session.configure({
      turn: this.#opts.turn,
      createResponse: this.#opts.createResponse ?? true,
      ...(context ? { context } : {}),
    });
  }

  attribute(device: DeviceRef): void {
    this.#usage?.attribute(device);
  }

  /** Why it ended, once ended. */
  get endReason(): string | null {
    return this.#endReason;
  }
}
