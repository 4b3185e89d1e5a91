/**
 * A `Conversation` over one upstream session at a time. It survives upstream drops and expiry by
 * reconnecting with backoff and carrying a summary of the recent transcripts into the new session, and
 * it rotates to a fresh session proactively, between turns, before the upstream's time limit.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type {
  AssistConversation,
  ConversationEvents,
  ConversationOptions,
  TurnEvents,
} from "./conversation.js";
import { summariseTurns, type TranscriptTurn } from "./session-config.js";
import type { RealtimeSession, SessionClose } from "./session.js";

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

const HISTORY_TURNS = 12;

export class LiveConversation extends EventEmitter<ConversationEvents> implements AssistConversation {
  readonly id = randomUUID();
  readonly turns = new EventEmitter<TurnEvents>();
  readonly #source: SessionSource;
  readonly #opts: ConversationOptions;
  readonly #limits: ConversationLimits;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #now: () => number;
  readonly #onEnd: (c: LiveConversation) => void;
  #link: Link = { status: "reconnecting", gen: 0 };
  #gen = 0;
  readonly #history: TranscriptTurn[] = [];
  #openResponse: string | null = null;
  #rotateTimer: NodeJS.Timeout | undefined;
  #rotation: Promise<RealtimeSession | null> | null = null;
  #nextSession: RealtimeSession | null = null;
  #endReason: string | null = null;

  constructor(deps: {
    source: SessionSource;
    session: RealtimeSession;
    opts: ConversationOptions;
    limits: ConversationLimits;
    logger: Logger;
    metrics: Metrics;
    now: () => number;
    onEnd: (c: LiveConversation) => void;
  }) {
    super();
    this.#source = deps.source;
    this.#opts = deps.opts;
    this.#limits = deps.limits;
    this.#metrics = deps.metrics;
    this.#now = deps.now;
    this.#onEnd = deps.onEnd;
    this.#log = deps.logger.child({ conversation: this.id });
    this.#attach(deps.session);
  }

  /** The upstream session currently serving this conversation (undefined while reconnecting/ended). */
  get session(): RealtimeSession | undefined {
    return this.#link.status === "attached" ? this.#link.session : undefined;
  }

  /** Final transcripts kept for carry-over, oldest first. */
  get history(): readonly TranscriptTurn[] {
    return this.#history;
  }

  appendAudio(pcm: Buffer): void {
    if (this.#link.status === "attached") this.#link.session.appendAudio(pcm);
  }

  commitAndRespond(): void {
    if (this.#link.status === "attached") this.#link.session.commitAndRespond();
  }

  cancelResponse(): void {
    if (this.#link.status === "attached") this.#link.session.cancelResponse();
  }

  interrupt(itemId: string, audioEndMs: number): void {
    if (this.#link.status === "attached") this.#link.session.interrupt(itemId, audioEndMs);
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
    session.activate();
    const on = {
      speechStarted: () => live() && this.emit("speech.started"),
      speechStopped: () => live() && this.emit("speech.stopped"),
      responseStart: (e: { id: string }) => {
        if (!live()) return;
        this.#openResponse = e.id;
        this.emit("response.start", e);
      },
      audio: (e: ConversationEvents["audio"][0]) => live() && this.emit("audio", e),
      responseEnd: (e: ConversationEvents["response.end"][0]) => {
        if (!live()) return;
        if (this.#openResponse === e.id) this.#openResponse = null;
        this.emit("response.end", e);
      },
      transcript: (e: ConversationEvents["transcript"][0]) => {
        if (!live()) return;
        if (e.final) this.#remember(e.role, e.text);
        this.emit("transcript", e);
      },
      tool: (e: ConversationEvents["tool"][0]) => live() && this.emit("tool", e),
      approval: (e: ConversationEvents["approval.request"][0]) => live() && this.emit("approval.request", e),
      error: (e: ConversationEvents["error"][0]) => {
        if (!live()) return;
        this.emit("error", e);
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
  }

  #remember(role: TranscriptTurn["role"], text: string): void {
    if (!text.trim()) return;
    this.#history.push({ role, text });
    if (this.#history.length > HISTORY_TURNS) this.#history.splice(0, this.#history.length - HISTORY_TURNS);
  }

  #context(): string | undefined {
    const s = summariseTurns(this.#history);
    return s || undefined;
  }

  #acquireOpts(): {
    turn: ConversationOptions["turn"];
    context?: string;
    satelliteId?: string;
    createResponse?: boolean;
  } {
    const context = this.#context();
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
    old.session.close(1000, "rotated");
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
    let lastError = "";
    for (const delay of this.#limits.reconnectDelaysMs) {
      if (delay > 0) await new Promise((r) => setTimeout(r, delay).unref());
      if (!stillMine()) return;
      try {
        const session = await this.#source.acquire(this.#acquireOpts());
        if (!stillMine()) return void session.close(1000, "conversation ended");
        this.#metrics.realtimeReconnects.inc();
        this.#log.info("conversation carried over to a new upstream session");
        this.#attach(session);
        return;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
        this.#log.warn({ err: lastError }, "reconnect attempt failed");
      }
    }
    if (!stillMine()) return;
    this.emit("error", {
      code: "upstream_unavailable",
      message: `Could not reconnect: ${lastError}`,
      fatal: true,
    });
    await this.end("upstream_unavailable");
  }

  // ── assist turns ──────────────────────────────────────────────────────────────────────────────

  commit(): void {
    if (this.#link.status === "attached") this.#link.session.commit();
  }

  respond(): void {
    if (this.#link.status === "attached") this.#link.session.respond();
  }

  setInputLanguage(language: string): void {
    const code = language.split(/[-_]/)[0]?.toLowerCase();
    if (this.#link.status === "attached" && code && /^[a-z]{2}$/.test(code))
      this.#link.session.setTranscriptionLanguage(code);
  }

  sendText(text: string): void {
    if (this.#link.status !== "attached") return;
    this.#remember("user", text);
    this.#link.session.sendText(text);
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
    session.on("input.committed", committed);
    session.on("user.transcript", transcript);
    session.on("user.transcript.failed", failed);
    session.on("response.failed", responseFailed);
    session.on("idle", idle);
    session.on("closed", lost);
    return () => {
      session.off("input.committed", committed);
      session.off("user.transcript", transcript);
      session.off("user.transcript.failed", failed);
      session.off("response.failed", responseFailed);
      session.off("idle", idle);
      session.off("closed", lost);
    };
  }

  prependHistory(turns: readonly TranscriptTurn[]): void {
    if (turns.length === 0) return;
    this.#history.unshift(...turns);
    if (this.#history.length > HISTORY_TURNS) this.#history.splice(0, this.#history.length - HISTORY_TURNS);
    if (this.#link.status !== "attached") return;
    const context = this.#context();
    this.#link.session.configure({
      turn: this.#opts.turn,
      createResponse: this.#opts.createResponse ?? true,
      ...(context ? { context } : {}),
    });
  }

  /** Why it ended, once ended. */
  get endReason(): string | null {
    return this.#endReason;
  }
}
