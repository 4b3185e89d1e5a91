/**
 * One voice run of an ESPHome voice satellite, from its `VoiceAssistantRequest` to `RUN_END`, driven
 * the way Home Assistant's `assist_satellite` drives it (DESIGN §11): the microphone is asked for at once,
 * resampled to 24 kHz into a Realtime conversation (audio that comes before the conversation is ready is
 * kept), and the device is told the upstream's progress with the voice events in Home Assistant's order:
 *
 *   RUN_START{url} STT_START STT_VAD_START STT_VAD_END STT_END{text} INTENT_START
 *   INTENT_PROGRESS{tts_start_streaming} INTENT_END{conversation_id, continue_conversation}
 *   TTS_START{text} TTS_END{url} RUN_END
 *
 * The reply audio is written to a reply stream the moment it arrives; `INTENT_PROGRESS` (the device starts
 * its media player) goes out with the first reply audio, never before `STT_END`. `TTS_END` goes out when
 * the stream ends, while the reply still plays; after a stop only `INTENT_END` and `RUN_END` follow.
 * Every failure ends with `ERROR{code, message}` then `RUN_END`. A stop (the stream closed early, or
 * `AnnounceFinished` before the reply could have played out) truncates the upstream item at what the
 * device played and is not a failure.
 */
import type { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { ESPHOME_VOICE_ERRORS } from "../errors.js";
import type { Logger } from "../log.js";
import type { Conversation, ConversationEvents, TurnEvents } from "../realtime/conversation.js";
import { AudioPipe } from "../satellite/media.js";
import { subscribe } from "../subscribe.js";
import { VoiceEvent, type DeviceConnection, type VoiceEventType } from "./api/index.js";
import { DevicePlayhead, type StartRule } from "./playhead.js";
import type { ReplyStream } from "./reply-stream.js";

/** The part of a reply stream a turn uses. */
export type TurnStream = Pick<
  ReplyStream,
  "url" | "write" | "hold" | "end" | "writtenMs" | "servedMs" | "closedEarly" | "done"
>;

/** What a turn reports when it is over. */
export type TurnOutcome = "answered" | "stopped" | "error" | "aborted";

/** Timings of one turn (monotonic ms; null when it did not happen). */
export interface TurnTimings {
  requestAt: number;
  speechEndAt: number | null;
  firstAudioAt: number | null;
  streamStartAt: number | null;
  endAt: number | null;
}

export interface TurnResult {
  outcome: TurnOutcome;
  error: { code: string; message: string } | null;
  /** The assistant asked a question: the device will listen again by itself. */
  continueConversation: boolean;
  timings: TurnTimings;
}

/** The turn's view of a conversation: the events it follows and the commands it gives. */
export type TurnConversation = Conversation & { readonly turns?: EventEmitter<TurnEvents> };

export interface TurnOptions {
  device: Pick<DeviceConnection, "respondToRequest" | "sendVoiceEvent">;
  /** The conversation, possibly still starting; a rejection carries `code`/`message` for the ERROR event. */
  conversation: Promise<TurnConversation>;
  /** The id the device gets in `INTENT_END` and names on its next request. */
  conversationId: string;
  stream: TurnStream;
  /** The device's start rule for the stream's format (`startRule`), or a fixed amount of audio (ms). */
  startRuleMs: StartRule | number;
  logger: Logger;
  limits?: Partial<TurnLimits>;
  now?: () => number;
}

export interface TurnLimits {
  /** No speech heard this long after the request: `stt-no-text-recognized`. */
  noSpeechMs: number;
  /** After the first reply audio, how long `INTENT_PROGRESS` waits for the user's transcript. */
  transcriptWaitMs: number;
  /** Nothing from the upstream this long (no tool or approval running): `timeout`. */
  silentUpstreamMs: number;
  /** How often the device's play head is sampled while the stream is open. */
  sampleMs: number;
}

const DEFAULT_LIMITS: TurnLimits = {
  noSpeechMs: 15_000,
  transcriptWaitMs: 1500,
  silentUpstreamMs: 30_000,
  sampleMs: 50,
};

/** Ends of sentences after which Home Assistant lets the device listen again. */
const QUESTION_END = /[?;？；]\s*$/u;

export class VoiceTurn {
  readonly #o: TurnOptions;
  readonly #limits: TurnLimits;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #pipe = new AudioPipe(16_000, 24_000);
  readonly #playhead: DevicePlayhead;
  readonly #timings: TurnTimings;
  #conversation: TurnConversation | null = null;
  #pendingMic: Buffer[] = [];
  #detach: () => void = () => undefined;
  /** Events already sent, so each goes out once and in order. */
  readonly #sent = new Set<VoiceEventType>();
  #userText: string | null = null;
  #assistantText = "";
  #responded = false;
  #heldForTool = false;
  #lastItem: string | null = null;
  #timer: NodeJS.Timeout | undefined;
  #transcriptTimer: NodeJS.Timeout | undefined;
  #sampler: NodeJS.Timeout | undefined;
  #finished = false;
  #resolve!: (r: TurnResult) => void;
  /** Settles once with the turn's result; never rejects. */
  readonly done: Promise<TurnResult>;

  constructor(o: TurnOptions) {
    this.#o = o;
    this.#limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.#now = o.now ?? (() => performance.now());
    this.#log = o.logger;
    this.#playhead = new DevicePlayhead(o.startRuleMs);
    this.#timings = {
      requestAt: this.#now(),
      speechEndAt: null,
      firstAudioAt: null,
      streamStartAt: null,
      endAt: null,
    };
    this.done = new Promise((resolve) => (this.#resolve = resolve));
  }

  /** Answers the request (microphone over the API) and starts the run; call once, at once. */
  start(): void {
    this.#o.device.respondToRequest({ port: 0 });
    this.#send(VoiceEvent.RUN_START, { url: this.#o.stream.url });
    this.#send(VoiceEvent.STT_START);
    this.#arm(this.#limits.noSpeechMs, () =>
      this.#fail("stt-no-text-recognized", ESPHOME_VOICE_ERRORS["stt-no-text-recognized"].message),
    );
    void this.#o.stream.closedEarly.then(() => this.#onStreamClosedEarly());
    this.#o.conversation.then(
      (c) => this.#attach(c),
      (err: unknown) => {
        const e = err as { code?: unknown; message?: unknown };
        const code = typeof e.code === "string" ? e.code : "upstream_unavailable";
        const message = typeof e.message === "string" && e.message ? e.message : String(err);
        this.#fail(code, message);
      },
    );
  }

  /** Microphone audio (PCM16 16 kHz mono) of this run; ignored once the upstream heard the end of speech. */
  audio(pcm: Buffer): void {
    if (this.#finished || this.#sent.has(VoiceEvent.STT_VAD_END) || pcm.byteLength < 2) return;
    const even = pcm.byteLength & 1 ? pcm.subarray(0, pcm.byteLength - 1) : pcm;
    const pcm24 = this.#pipe.micToUpstream(even);
    if (pcm24.byteLength === 0) return;
    if (this.#conversation) this.#conversation.appendAudio(pcm24);
    // The pipe's output is a view it reuses on the next frame: what waits for the conversation is copied.
    else this.#pendingMic.push(Buffer.from(pcm24));
  }

  /**
   * The device played its reply to the end or was stopped (`AnnounceFinished`). If the reply could not
   * have played out by now, it was stopped: the upstream item is truncated at what was heard.
   */
  announceFinished(): void {
    const at = this.#now();
    this.#sample(at);
    if (this.#playhead.cutShort(at)) this.#stop(at, "announce finished early");
  }

  /**
   * The run is over without an answer. `tellDevice`: the device stopped it itself
   * (`VoiceAssistantRequest{start:false}`: its stop or wake word, `voice_assistant.stop`): it is told
   * `INTENT_END{conversation_id}` (so its next request continues this conversation) and `RUN_END` (a
   * device awaiting the response waits for it), never `TTS_END` (DESIGN §11's trap). Otherwise (a new
   * run started) nothing is sent.
   */
  abort(reason: string, tellDevice = false): void {
    if (this.#finished) return;
    this.#log.info({ reason }, "the device ended the run");
    this.#truncateAt(this.#now());
    this.#complete("aborted", null);
    if (!tellDevice) return;
    this.#send(VoiceEvent.INTENT_END, {
      conversation_id: this.#o.conversationId,
      continue_conversation: "0",
    });
    this.#send(VoiceEvent.RUN_END);
  }

  /** Where the run is, as the status page shows it. */
  get phase(): "listening" | "thinking" | "replying" | "done" {
    if (this.#finished) return "done";
    if (this.#sent.has(VoiceEvent.INTENT_PROGRESS)) return "replying";
    return this.#sent.has(VoiceEvent.STT_VAD_END) ? "thinking" : "listening";
  }

  get conversationId(): string {
    return this.#o.conversationId;
  }

  // ── upstream ────────────────────────────────────────────────────────────────────────────────

  #attach(c: TurnConversation): void {
    if (this.#finished) return;
    this.#conversation = c;
    for (const pcm of this.#pendingMic.splice(0)) c.appendAudio(pcm);
    const on: { [E in keyof ConversationEvents]?: (...a: ConversationEvents[E]) => void } = {
      "speech.started": () => this.#progress(() => this.#send(VoiceEvent.STT_VAD_START)),
      "speech.stopped": () =>
        this.#progress(() => {
          this.#send(VoiceEvent.STT_VAD_START);
          this.#timings.speechEndAt ??= this.#now();
          this.#send(VoiceEvent.STT_VAD_END);
        }),
      "response.start": () => this.#progress(() => (this.#responded = true)),
      audio: (a) => this.#progress(() => this.#onAudio(a.itemId, a.pcm)),
      transcript: (t) =>
        this.#progress(() => {
          if (!t.final) return;
          if (t.role === "user") this.#onUserText(t.text);
          else this.#assistantText = t.text;
        }),
      tool: (t) =>
        this.#progress(() => {
          if (t.status !== "started") return;
          this.#heldForTool = true;
          this.#o.stream.hold(true);
        }),
      "approval.request": () =>
        this.#progress(() => {
          this.#heldForTool = true;
          this.#o.stream.hold(true);
        }),
      error: (e) => {
        if (e.fatal) this.#fail(e.code, e.message);
        else if (e.code === "response_failed") this.#fail("response_failed", e.message);
      },
      // The budget ends a conversation after its answer: a run that began on it meanwhile says why.
      closed: ({ reason }) =>
        reason === "budget_exceeded"
          ? this.#fail(reason, ESPHOME_VOICE_ERRORS.budget_exceeded.message)
          : this.#fail("upstream_unavailable", `the conversation ended (${reason})`),
    };
    const detachConv = subscribe(c, on);
    const detachTurns = c.turns
      ? subscribe(c.turns, {
          idle: () => this.#progress(() => this.#onIdle()),
          "user.transcript.failed": () => this.#progress(() => this.#onUserText("")),
        })
      : () => undefined;
    this.#detach = () => {
      detachConv();
      detachTurns();
    };
  }

  /** An upstream event moved the turn on: the silence watchdog starts over (paused while a tool runs). */
  #progress(fn: () => void): void {
    if (this.#finished) return;
    fn();
    if (this.#finished) return;
    if (!this.#sent.has(VoiceEvent.STT_VAD_START)) return; // still the no-speech clock
    this.#arm(this.#limits.silentUpstreamMs, () => {
      if (this.#heldForTool) return this.#progress(() => undefined);
      this.#fail("timeout", ESPHOME_VOICE_ERRORS.timeout.message);
    });
  }

  #onUserText(text: string): void {
    if (this.#userText !== null) return;
    this.#userText = text;
    this.#releaseIntent();
  }

  /** STT_END and INTENT_START, then INTENT_PROGRESS if reply audio is already waiting. */
  #releaseIntent(): void {
    clearTimeout(this.#transcriptTimer);
    this.#send(VoiceEvent.STT_VAD_START);
    this.#send(VoiceEvent.STT_VAD_END);
    this.#send(VoiceEvent.STT_END, { text: this.#userText ?? "" });
    this.#send(VoiceEvent.INTENT_START);
    if (this.#timings.firstAudioAt !== null) this.#startStreaming();
  }

  #onAudio(itemId: string, pcm: Buffer): void {
    this.#responded = true;
    if (this.#heldForTool) {
      this.#heldForTool = false;
      this.#o.stream.hold(false);
    }
    this.#lastItem = itemId;
    // Keep-alive silence the stream wrote while held is stream time too.
    this.#playhead.wrote(null, this.#o.stream.writtenMs - this.#playhead.writtenMs);
    this.#o.stream.write(pcm);
    this.#playhead.wrote(itemId, pcm.byteLength / 48);
    if (this.#timings.firstAudioAt !== null) return;
    this.#timings.firstAudioAt = this.#now();
    if (this.#sent.has(VoiceEvent.STT_END)) return this.#startStreaming();
    // The transcript usually trails the first audio by a little: hold INTENT_PROGRESS for it, not forever.
    this.#transcriptTimer = setTimeout(() => {
      if (this.#finished) return;
      this.#userText ??= "";
      this.#releaseIntent();
    }, this.#limits.transcriptWaitMs);
  }

  #startStreaming(): void {
    if (this.#sent.has(VoiceEvent.INTENT_PROGRESS)) return;
    this.#send(VoiceEvent.INTENT_PROGRESS, { tts_start_streaming: "1" });
    this.#timings.streamStartAt = this.#now();
    this.#sampler = setInterval(() => this.#sample(this.#now()), this.#limits.sampleMs);
    this.#sampler.unref();
  }

  /** Nothing left in progress upstream: the answer is complete. */
  #onIdle(): void {
    if (!this.#responded) return; // the turn's response has not begun yet
    if (this.#userText === null) this.#userText = "";
    this.#releaseIntent();
    this.#o.stream.hold(false);
    this.#o.stream.end();
    this.#playhead.end();
    const continueConversation = QUESTION_END.test(this.#assistantText);
    // Always both keys, as Home Assistant sends them: the firmware keeps the last continue_conversation.
    this.#send(VoiceEvent.INTENT_END, {
      conversation_id: this.#o.conversationId,
      continue_conversation: continueConversation ? "1" : "0",
    });
    this.#send(VoiceEvent.TTS_START, { text: this.#assistantText });
    this.#send(VoiceEvent.TTS_END, { url: this.#o.stream.url });
    this.#send(VoiceEvent.RUN_END);
    this.#complete("answered", null, continueConversation);
  }

  // ── the device ──────────────────────────────────────────────────────────────────────────────

  #sample(at: number): void {
    this.#playhead.served(this.#o.stream.servedMs, at);
  }

  #onStreamClosedEarly(): void {
    const at = this.#now();
    this.#sample(at);
    this.#stop(at, "reply stream closed early");
  }

  /** The device stopped playing at `at` (stop word, wake word): truncate, cancel, end without error. */
  #stop(at: number, why: string): void {
    const stillRunning = !this.#finished;
    this.#truncateAt(at);
    this.#log.info(
      { why, played_ms: Math.round(this.#playhead.playedMs(at)) },
      "reply stopped on the device",
    );
    if (!stillRunning) return;
    this.#send(VoiceEvent.INTENT_END, {
      conversation_id: this.#o.conversationId,
      continue_conversation: "0",
    });
    this.#send(VoiceEvent.RUN_END);
    this.#complete("stopped", null);
  }

  /** Cuts the upstream items at the device's play head and cancels a response in flight. */
  #truncateAt(at: number): void {
    const c = this.#conversation;
    if (c === null) return;
    const { head, unheard } = this.#playhead.stoppedAt(at);
    for (const itemId of unheard) c.interrupt(itemId, 0);
    if (head) c.interrupt(head.itemId, head.audioEndMs);
    else if (unheard.length === 0) {
      if (!this.#finished) c.cancelResponse();
      else if (this.#lastItem !== null && this.#playhead.cutShort(at))
        c.interrupt(this.#lastItem, Math.round(this.#playhead.playedMs(at)));
    }
  }

  // ── ending ──────────────────────────────────────────────────────────────────────────────────

  /** ERROR then RUN_END; the response in flight is cancelled and the stream closed. */
  #fail(code: string, message: string): void {
    if (this.#finished) return;
    this.#log.warn({ code }, `voice run failed: ${message}`);
    if (this.#conversation) this.#conversation.cancelResponse();
    const known = (ESPHOME_VOICE_ERRORS as Record<string, { message: string } | undefined>)[code];
    this.#send(VoiceEvent.ERROR, { code, message: message || known?.message || code });
    this.#send(VoiceEvent.RUN_END);
    this.#complete("error", { code, message });
  }

  #complete(
    outcome: TurnOutcome,
    error: { code: string; message: string } | null,
    continueConversation = false,
  ): void {
    this.#finished = true;
    this.#pipe.dispose();
    clearTimeout(this.#timer);
    clearTimeout(this.#transcriptTimer);
    this.#timings.endAt = this.#now();
    if (outcome !== "answered") {
      this.#o.stream.hold(false);
      this.#o.stream.end();
    }
    // The stream may still be served after the answer: keep sampling the play head until it is over.
    if (outcome === "answered")
      void this.#o.stream.done.finally(() => {
        this.#sample(this.#now());
        clearInterval(this.#sampler);
      });
    else clearInterval(this.#sampler);
    this.#detach();
    this.#resolve({ outcome, error, continueConversation, timings: { ...this.#timings } });
  }

  #send(type: VoiceEventType, data?: Record<string, string>): void {
    if (this.#sent.has(type)) return;
    if (this.#finished && type !== VoiceEvent.INTENT_END && type !== VoiceEvent.RUN_END) return;
    this.#sent.add(type);
    this.#o.device.sendVoiceEvent(type, data);
  }

  #arm(ms: number, fn: () => void): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(fn, ms);
    this.#timer.unref();
  }
}
