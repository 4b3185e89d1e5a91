/**
 * The voice assistant of one ESPHome device that OpenVoice owns: it turns the device's requests into
 * `VoiceTurn`s, keeps the device's conversation between runs (the `conversation_id` the device names
 * continues it while it is alive), and speaks announcements. Runs one turn at a time: a new request ends
 * the one before as a stop.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ConversationOptions, SpeechSource } from "../realtime/conversation.js";
import { subscribe } from "../subscribe.js";
import {
  VoiceEvent,
  VoiceFeature,
  type DeviceConnection,
  type DeviceConnectionEvents,
  type VoiceRequest,
} from "./api/index.js";
import { startRule } from "./playhead.js";
import { DeviceTimers, DeviceTimerTools } from "./timers.js";
import type { ReplyFormat } from "./reply-stream.js";
import {
  VoiceTurn,
  type TurnConversation,
  type TurnStream,
  type TurnLimits,
  type TurnResult,
} from "./turn.js";

/** Where a device's voice assistant is, as the status page shows it. */
export type VoicePhase = "idle" | "listening" | "thinking" | "replying" | "announcing";

export interface VoiceHostDeps {
  conversations: { start(opts: ConversationOptions): Promise<TurnConversation> };
  speech: SpeechSource;
  streams: { open(o: { device: string; format: ReplyFormat }): TurnStream };
  format: ReplyFormat;
  /** A conversation nobody spoke to for this long ends (`satellites.conversation_idle_s`). */
  conversationIdleS: number;
  logger: Logger;
  metrics: Metrics;
  turnLimits?: Partial<TurnLimits>;
  /** How long an announcement may take to be reported played. Default 120 s. */
  announceTimeoutMs?: number;
}

/** The last run, for the status page. */
export interface LastTurn {
  outcome: TurnResult["outcome"];
  error: string | null;
  /** End of speech to the first reply audio, ms. */
  firstAudioMs: number | null;
  /** End of speech to the device being told to play, ms. */
  streamStartMs: number | null;
  totalMs: number | null;
  at: string;
}

interface HeldConversation {
  readonly id: string;
  readonly ready: Promise<TurnConversation>;
  conversation: TurnConversation | null;
  idleTimer: NodeJS.Timeout | undefined;
}

export class VoiceHost {
  readonly #name: string;
  readonly #conn: DeviceConnection;
  readonly #d: VoiceHostDeps;
  readonly #log: Logger;
  #turn: VoiceTurn | null = null;
  /** An answered run whose reply may still play after its RUN_END (a stop then truncates it). */
  #playing: VoiceTurn | null = null;
  #held: HeldConversation | null = null;
  #announcing: { resolve: () => void } | null = null;
  #lastTurn: LastTurn | null = null;
  readonly #detach: () => void;
  /** The device's timers (devices with the TIMERS feature): tools of its conversations, events to it. */
  readonly #timers: { timers: DeviceTimers; tools: DeviceTimerTools; own: boolean } | null = null;
  #closed = false;

  /**
   * `timers`: the device's timers when they outlive this connection (kept by the device manager, so a
   * kitchen timer survives a reconnect); they are shown to the device again at once (UPDATED each) and
   * left running on close. Without it the host keeps its own, dropped on close.
   */
  constructor(name: string, conn: DeviceConnection, deps: VoiceHostDeps, timers?: DeviceTimers) {
    this.#name = name;
    this.#conn = conn;
    this.#d = deps;
    this.#log = deps.logger;
    if ((conn.info.voiceFeatures & VoiceFeature.TIMERS) !== 0) {
      const t = timers ?? new DeviceTimers({ onEvent: (e) => conn.sendTimerEvent(e) });
      this.#timers = { timers: t, tools: new DeviceTimerTools(t), own: timers === undefined };
      if (timers) timers.resend();
    }
    this.#detach = subscribe<DeviceConnectionEvents>(conn, {
      "voice.request": (r: VoiceRequest) => this.#onRequest(r),
      "voice.audio": ({ pcm }: { pcm: Buffer }) => this.#turn?.audio(pcm),
      "voice.announce_finished": () => this.#onAnnounceFinished(),
    });
  }

  get phase(): VoicePhase {
    if (this.#announcing) return "announcing";
    const p = this.#turn?.phase ?? "done";
    return p === "done" ? "idle" : p;
  }

  get lastTurn(): LastTurn | null {
    return this.#lastTurn;
  }

  /**
   * Speaks `text` on the device through its announce, in the configured voice; resolves once the device
   * reports the announcement finished, rejects when the upstream fails or the device never reports it
   * (a device whose voice assistant someone else owns drops announcements).
   */
  async announce(text: string): Promise<void> {
    if (this.#closed) throw new Error("the device is not connected");
    const stream = this.#d.streams.open({ device: this.#name, format: this.#d.format });
    const played = new Promise<void>((resolve) => (this.#announcing = { resolve }));
    this.#conn.announce({ mediaId: stream.url, text });
    const timeoutMs = this.#d.announceTimeoutMs ?? 120_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#d.speech.speak(text, { onAudio: (pcm) => stream.write(pcm) });
      stream.end();
      await Promise.race([
        played,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("the device did not report the announcement played")),
            timeoutMs,
          );
        }),
      ]);
      this.#d.metrics.esphomeAnnouncements.inc({ device: this.#name, outcome: "played" });
    } catch (err) {
      stream.end();
      this.#d.metrics.esphomeAnnouncements.inc({ device: this.#name, outcome: "failed" });
      throw err;
    } finally {
      clearTimeout(timer);
      this.#announcing = null;
    }
  }

  /** Ends the run and the conversation; no event is sent to the device. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#detach();
    if (this.#timers?.own) this.#timers.timers.dispose();
    this.#turn?.abort("device gone");
    this.#turn = null;
    const held = this.#held;
    this.#held = null;
    if (held) {
      clearTimeout(held.idleTimer);
      await held.ready.then(
        (c) => c.end("device gone"),
        () => undefined,
      );
    }
  }

  // ── runs ────────────────────────────────────────────────────────────────────────────────────

  #onRequest(r: VoiceRequest): void {
    if (this.#closed) return;
    if (!r.start) {
      this.#turn?.abort("the device stopped the run", true);
      // What the device streamed of the stopped run never reaches the next question.
      this.#held?.conversation?.cancelTurn();
      return;
    }
    // A wake during a reply: the previous run is over for the device.
    this.#turn?.abort("a new run started");
    this.#playing = null;
    let stream: TurnStream;
    try {
      stream = this.#d.streams.open({ device: this.#name, format: this.#d.format });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.#log.warn(`voice run refused: ${message}`);
      this.#conn.respondToRequest({ port: 0 });
      this.#conn.sendVoiceEvent(VoiceEvent.ERROR, { code: "no_reply_url", message });
      this.#conn.sendVoiceEvent(VoiceEvent.RUN_END);
      return;
    }
    const held = this.#conversationFor(r.conversationId);
    clearTimeout(held.idleTimer);
    // A continued conversation starts the new question clean: no abandoned half-sentence, no old answer.
    held.conversation?.cancelTurn();
    const turn = new VoiceTurn({
      device: this.#conn,
      conversation: held.ready,
      conversationId: held.id,
      stream,
      startRuleMs: startRule(this.#d.format),
      logger: this.#log,
      ...(this.#d.turnLimits ? { limits: this.#d.turnLimits } : {}),
    });
    this.#turn = turn;
    turn.start();
    void turn.done.then((res) => this.#onTurnDone(turn, held, res));
  }

  #onTurnDone(turn: VoiceTurn, held: HeldConversation, res: TurnResult): void {
    const t = res.timings;
    const since = (x: number | null): number | null =>
      x === null || t.speechEndAt === null ? null : Math.round(x - t.speechEndAt);
    this.#lastTurn = {
      outcome: res.outcome,
      error: res.error ? `${res.error.message} (${res.error.code})` : null,
      firstAudioMs: since(t.firstAudioAt),
      streamStartMs: since(t.streamStartAt),
      totalMs: t.endAt === null ? null : Math.round(t.endAt - t.requestAt),
      at: new Date().toISOString(),
    };
    this.#d.metrics.esphomeTurns.inc({ device: this.#name, outcome: res.outcome });
    if (t.firstAudioAt !== null && t.speechEndAt !== null)
      this.#d.metrics.esphomeFirstAudio.observe(
        { device: this.#name },
        (t.firstAudioAt - t.speechEndAt) / 1000,
      );
    const { at: _at, ...logged } = this.#lastTurn;
    this.#log.info(logged, "voice run ended");
    if (this.#turn === turn) this.#turn = null;
    if (res.outcome === "answered") this.#playing = turn;
    if (res.outcome === "error" && this.#held === held) this.#dropConversation("the run failed");
    else this.#armIdle(held);
  }

  #onAnnounceFinished(): void {
    if (this.#announcing) return this.#announcing.resolve();
    this.#turn?.announceFinished();
    this.#playing?.announceFinished();
    this.#playing = null;
  }

  // ── the conversation ────────────────────────────────────────────────────────────────────────

  /** The device's conversation when `conversationId` names the one still alive, else a new one. */
  #conversationFor(conversationId: string): HeldConversation {
    const held = this.#held;
    if (held && held.id === conversationId && conversationId !== "") return held;
    if (held) this.#dropConversation("a new conversation started");
    const ready = this.#d.conversations.start({
      turn: "server_vad",
      satelliteId: this.#name,
      device: { id: this.#name, route: "esphome" },
      ...(this.#timers ? { tools: this.#timers.tools } : {}),
    });
    const fresh: HeldConversation = { id: randomUUID(), ready, conversation: null, idleTimer: undefined };
    this.#held = fresh;
    ready.then(
      (c) => {
        fresh.conversation = c;
        if (this.#held !== fresh || this.#closed) return void c.end("not needed");
        c.once("closed", () => {
          if (this.#held === fresh) this.#held = null;
        });
      },
      () => {
        if (this.#held === fresh) this.#held = null;
      },
    );
    return fresh;
  }

  #armIdle(held: HeldConversation): void {
    clearTimeout(held.idleTimer);
    held.idleTimer = setTimeout(() => {
      if (this.#held === held && this.#turn === null) this.#dropConversation("idle");
    }, this.#d.conversationIdleS * 1000);
    held.idleTimer.unref();
  }

  #dropConversation(reason: string): void {
    const held = this.#held;
    if (!held) return;
    this.#held = null;
    clearTimeout(held.idleTimer);
    void held.ready.then(
      (c) => c.end(reason),
      () => undefined,
    );
  }
}
