/**
 * The voice assistant of `voice_assistant/voice_assistant.cpp` on a media-player device (the Voice
 * PE), as observable over the API:
 * - one API client: the first subscriber; a later subscribe is dropped (the firmware logs "Multiple
 *   API Clients attempting to connect to Voice Assistant"); an unsubscribe or a disconnect frees it;
 * - a run: the microphone starts, `VoiceAssistantRequest{start, conversation_id, flags: USE_VAD,
 *   audio_settings, wake_word_phrase}`, a 512 ms ring holds the audio until `VoiceAssistantResponse`,
 *   then 1024-byte frames at real time until `STT_VAD_END`;
 * - `on_event`: RUN_START keeps the `url`; INTENT_PROGRESS `tts_start_streaming` = "1" plays it at once
 *   (STREAMING_RESPONSE); INTENT_END keeps `conversation_id` and `continue_conversation`; TTS_END with a
 *   url plays it unless streaming already started, and moves to STREAMING_RESPONSE from any state (the
 *   trap of DESIGN §11); RUN_END ends a run that has no reply; ERROR sends `start: false` and idles;
 * - STREAMING_RESPONSE ends when the media player leaves its announcement (or after 2 s if it never
 *   starts): `VoiceAssistantAnnounceFinished{success: true}`, then a new run with the same
 *   conversation id when `continue_conversation`, else IDLE;
 * - timers are recorded; an announcement plays `media_id` (after `preannounce_media_id`);
 * - the wake word and the stop word during a run are `voice_assistant.stop` (the Voice PE's
 *   `on_wake_word_detected`): `request_stop()` — no follow-up run, and `start: false` from a run still
 *   listening, awaiting the response, or playing a reply whose TTS_END has not come.
 */
import { EmulatedMediaPlayer, type DecoderGeneration, type PlaybackResult } from "./media-player.js";
import { Msg, announceFinished, voiceAssistantRequest, voiceAudio, type TimerRecord } from "./messages.js";

export type { TimerRecord } from "./messages.js";

export type VaState =
  | "IDLE"
  | "STARTING_PIPELINE"
  | "STREAMING_MICROPHONE"
  | "AWAITING_RESPONSE"
  | "STREAMING_RESPONSE"
  | "RESPONSE_FINISHED";

export const EventType = {
  ERROR: 0,
  RUN_START: 1,
  RUN_END: 2,
  STT_END: 4,
  INTENT_END: 6,
  TTS_END: 8,
  STT_VAD_END: 12,
  INTENT_PROGRESS: 100,
} as const;

const RING_BYTES = 512 * 32; // 512 ms of 16 kHz 16-bit mono
const FRAME_BYTES = 1024; // 32 ms
const BYTES_PER_MS = 32;
const PLAYBACK_TIMEOUT_MS = 2000;
const CONVERSATION_TIMEOUT_MS = 5 * 60_000;
const REQUEST_FLAG_USE_VAD = 1;

export interface RecordedEvent {
  type: number;
  data: Record<string, string>;
  at: number;
}

export interface RunRecord {
  events: RecordedEvent[];
  /** performance.now() when the last frame holding speech was sent; 0 if no speech was sent. */
  speechEndAt: number;
  /** performance.now() when the reply's first sound played by the start rule; null if none. */
  firstSoundAt: number | null;
  playedMs: number;
  contentType: string | null;
  /** Decoded PCM of what was played when the format is WAV; the raw bytes otherwise. */
  replyBytes: Buffer<ArrayBufferLike>;
  /** The client's ERROR event, if any. */
  error: { code: string; message: string } | null;
  /** Why the media player failed ("read timeout", ...), null otherwise. */
  playbackError: string | null;
  /** The runs the device started itself (continue_conversation), in order. */
  followUps: RunRecord[];
}

/** The API connection the voice assistant talks to. */
export interface VaClient {
  readonly clientInfo: string;
  send(type: number, payload: Buffer): void;
}

function newRecord(): RunRecord {
  return {
    events: [],
    speechEndAt: 0,
    firstSoundAt: null,
    playedMs: 0,
    contentType: null,
    replyBytes: Buffer.alloc(0),
    error: null,
    playbackError: null,
    followUps: [],
  };
}

export class EmulatedVoiceAssistant {
  owner: VaClient | null = null;
  state: VaState = "IDLE";
  readonly events: RecordedEvent[] = [];
  readonly timerEvents: TimerRecord[] = [];
  readonly announcements: { mediaId: string; text: string; record: RunRecord }[] = [];
  readonly media: EmulatedMediaPlayer;

  private conversationId = "";
  private conversationTimer: NodeJS.Timeout | null = null;
  private continueConversation = false;
  private ttsUrl = "";
  private startedStreamingTts = false;
  private mpState: "IDLE" | "URL_SENT" | "PLAYING" | "FINISHED" = "IDLE";
  private playbackTimer: NodeJS.Timeout | null = null;
  private pump: NodeJS.Timeout | null = null;
  private mic: { speech: Buffer; t0: number; sent: number } = { speech: Buffer.alloc(0), t0: 0, sent: 0 };
  private record: RunRecord | null = null;
  private root: RunRecord | null = null;
  private followUp: Buffer | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly wakeWord: string,
    private readonly maxListenMs: number,
    readTimeoutMs?: number,
    decoderGeneration?: DecoderGeneration,
  ) {
    this.media = new EmulatedMediaPlayer(readTimeoutMs, decoderGeneration);
    this.media.on("state", (s) => {
      if (s === "announcing" && this.mpState === "URL_SENT") this.mpState = "PLAYING";
      else if (s === "idle" && this.mpState === "PLAYING") this.mpState = "FINISHED";
      this.loop();
    });
  }

  /** `client_subscription`: the first subscriber wins; later ones are dropped silently. */
  subscription(client: VaClient, subscribe: boolean): void {
    if (!subscribe) {
      if (this.owner === client) this.clientGone();
      return;
    }
    if (this.owner !== null) return;
    this.owner = client;
  }

  /** The owner unsubscribed or disconnected: a running pipeline goes idle. */
  clientGone(): void {
    this.owner = null;
    if (this.state !== "IDLE") {
      this.stopMic();
      this.media.stop();
      this.setState("IDLE");
    }
  }

  /**
   * The wake word, as the Voice PE's `on_wake_word_detected` handles it: from IDLE it starts a run;
   * while a run is going (`voice_assistant.is_running`) it only stops it (`voice_assistant.stop`), and
   * the promise resolves with the running run's record. Resolves when the device is idle again.
   */
  wake(speech: Buffer, opts: { followUp?: Buffer; conversationId?: string } = {}): Promise<RunRecord> {
    if (!this.owner) return Promise.reject(new Error("no API client owns the voice assistant"));
    if (this.state !== "IDLE") {
      const running = this.root ?? newRecord();
      this.requestStop();
      return this.idle().then(() => running);
    }
    if (opts.conversationId !== undefined) this.conversationId = opts.conversationId;
    this.followUp = opts.followUp ?? null;
    const root = newRecord();
    this.root = root;
    this.startPipeline(speech, root);
    return new Promise((resolve) => this.idleWaiters.push(() => resolve(root)));
  }

  /** The Voice PE's stop word: a wake word model too, so `voice_assistant.stop` while a run is going. */
  stopWord(): void {
    if (this.state === "IDLE") this.media.stop();
    else this.requestStop();
  }

  /**
   * `request_stop()`: no follow-up run; a run still listening sends `start: false` and idles; one
   * awaiting the response sends `start: false` and waits for the client's RUN_END; one playing its
   * reply stops the media player, and sends `start: false` only while TTS_END has not come yet.
   */
  private requestStop(): void {
    this.continueConversation = false;
    this.followUp = null;
    switch (this.state) {
      case "STARTING_PIPELINE":
      case "STREAMING_MICROPHONE":
        this.signalStop();
        this.stopMic();
        this.setState("IDLE");
        break;
      case "AWAITING_RESPONSE":
        this.signalStop();
        break;
      case "STREAMING_RESPONSE":
        this.media.stop();
        if (this.startedStreamingTts) this.signalStop();
        break;
      default:
        break;
    }
  }

  onResponse(r: { port: number; error: boolean }): void {
    if (r.error) {
      // failed_to_start(): the microphone stops, the device idles.
      this.stopMic();
      this.setState("IDLE");
      return;
    }
    if (this.state !== "STARTING_PIPELINE") {
      this.signalStop();
      return;
    }
    this.setState("STREAMING_MICROPHONE");
    const produced = this.produced();
    // What the 512 ms ring still holds is sent first, then frames as the microphone fills them.
    this.mic.sent = Math.max(0, produced - RING_BYTES);
    this.pumpMic();
    this.pump = setInterval(() => this.pumpMic(), 8);
  }

  onEvent(type: number, data: Record<string, string>): void {
    const e = { type, data, at: performance.now() };
    this.events.push(e);
    this.record?.events.push(e);
    switch (type) {
      case EventType.RUN_START:
        this.startedStreamingTts = false;
        if (data.url !== undefined) this.ttsUrl = data.url;
        break;
      case EventType.INTENT_PROGRESS:
        if (data.tts_start_streaming === "1" && this.ttsUrl) {
          this.mpState = "URL_SENT";
          this.play([this.ttsUrl]);
          this.startedStreamingTts = true;
          this.startPlaybackTimeout();
          this.ttsUrl = "";
          this.stopMic();
          this.setState("STREAMING_RESPONSE");
        }
        break;
      case EventType.INTENT_END:
        if (data.conversation_id !== undefined) this.conversationId = data.conversation_id;
        if (data.continue_conversation !== undefined)
          this.continueConversation = data.continue_conversation === "1";
        break;
      case EventType.TTS_END: {
        const url = data.url ?? "";
        if (!url) break;
        if (!this.startedStreamingTts) {
          this.mpState = "URL_SENT";
          this.play([url]);
          this.startPlaybackTimeout();
        }
        this.startedStreamingTts = false;
        this.stopMic();
        this.setState("STREAMING_RESPONSE");
        break;
      }
      case EventType.RUN_END:
        if (
          this.state === "STARTING_PIPELINE" ||
          this.state === "STREAMING_MICROPHONE" ||
          this.state === "AWAITING_RESPONSE"
        ) {
          this.stopMic();
          this.setState("IDLE");
        }
        break;
      case EventType.ERROR: {
        const code = data.code ?? "";
        if (this.record) this.record.error = { code, message: data.message ?? "" };
        if (["wake-word-timeout", "wake_word_detection_aborted", "no_wake_word"].includes(code)) break;
        if (this.state !== "IDLE") {
          this.signalStop();
          this.stopMic();
          this.setState("IDLE");
        }
        break;
      }
      case EventType.STT_VAD_END:
        this.stopMic();
        this.setState("AWAITING_RESPONSE");
        break;
    }
  }

  onTimer(t: TimerRecord): void {
    this.timerEvents.push(t);
  }

  onAnnounce(a: {
    mediaId: string;
    text: string;
    preannounceMediaId: string;
    startConversation: boolean;
  }): void {
    const record = newRecord();
    this.announcements.push({ mediaId: a.mediaId, text: a.text, record });
    this.record = record;
    this.mpState = "URL_SENT";
    this.play(a.preannounceMediaId ? [a.preannounceMediaId, a.mediaId] : [a.mediaId]);
    this.continueConversation = a.startConversation;
    this.startPlaybackTimeout();
    this.stopMic();
    this.setState("STREAMING_RESPONSE");
  }

  /** Waits until the voice assistant is idle. */
  idle(): Promise<void> {
    if (this.state === "IDLE") return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.stopMic();
    this.media.stop();
    if (this.playbackTimer) clearTimeout(this.playbackTimer);
    if (this.conversationTimer) clearTimeout(this.conversationTimer);
  }

  private startPipeline(speech: Buffer, record: RunRecord): void {
    this.record = record;
    this.mic = { speech, t0: performance.now(), sent: 0 };
    this.mpState = "IDLE";
    this.owner?.send(
      Msg.VoiceAssistantRequest,
      voiceAssistantRequest({
        start: true,
        conversationId: this.conversationId,
        flags: REQUEST_FLAG_USE_VAD,
        wakeWord: this.wakeWord,
      }),
    );
    this.setState("STARTING_PIPELINE");
    const t0 = this.mic.t0;
    setTimeout(() => {
      if (this.mic.t0 === t0) this.checkListenLimit();
    }, this.maxListenMs + 10).unref();
    if (this.conversationTimer) clearTimeout(this.conversationTimer);
    this.conversationTimer = setTimeout(() => (this.conversationId = ""), CONVERSATION_TIMEOUT_MS);
    this.conversationTimer.unref();
  }

  private produced(): number {
    return Math.floor((performance.now() - this.mic.t0) * BYTES_PER_MS) & ~1;
  }

  private pumpMic(): void {
    if (this.state !== "STREAMING_MICROPHONE") return;
    const produced = this.produced();
    while (produced - this.mic.sent >= FRAME_BYTES) {
      const frame = Buffer.alloc(FRAME_BYTES);
      if (this.mic.sent < this.mic.speech.length)
        this.mic.speech.copy(frame, 0, this.mic.sent, this.mic.sent + FRAME_BYTES);
      this.owner?.send(Msg.VoiceAssistantAudio, voiceAudio(frame));
      this.mic.sent += FRAME_BYTES;
      if (this.record && this.record.speechEndAt === 0 && this.mic.sent >= this.mic.speech.length) {
        this.record.speechEndAt = performance.now();
      }
    }
    this.checkListenLimit();
  }

  /** Emulator only (not firmware): a run that gets no response or no STT_VAD_END ends, so a test cannot hang. */
  private checkListenLimit(): void {
    if (this.state !== "STARTING_PIPELINE" && this.state !== "STREAMING_MICROPHONE") return;
    if (performance.now() - this.mic.t0 <= this.maxListenMs) return;
    if (this.record)
      this.record.error = { code: "emulator-listen-timeout", message: "no response or no STT_VAD_END" };
    this.signalStop();
    this.stopMic();
    this.setState("IDLE");
  }

  private stopMic(): void {
    if (this.pump) clearInterval(this.pump);
    this.pump = null;
  }

  private signalStop(): void {
    this.owner?.send(
      Msg.VoiceAssistantRequest,
      voiceAssistantRequest({ start: false, conversationId: "", flags: 0, wakeWord: "" }),
    );
  }

  private play(urls: string[]): void {
    const record = this.record;
    void this.media.playAll(urls).then((r: PlaybackResult) => {
      if (!record) return;
      record.firstSoundAt = r.firstSoundAt;
      record.playedMs = r.playedMs;
      record.contentType = r.contentType;
      record.replyBytes = r.pcm ?? r.bytes;
      record.playbackError = r.error;
    });
  }

  private startPlaybackTimeout(): void {
    if (this.playbackTimer) clearTimeout(this.playbackTimer);
    this.playbackTimer = setTimeout(() => {
      this.playbackTimer = null;
      if (this.mpState === "PLAYING") return;
      this.responseFinished();
    }, PLAYBACK_TIMEOUT_MS);
  }

  /** The STREAMING_RESPONSE and RESPONSE_FINISHED steps of `loop()`. */
  private loop(): void {
    if (this.state !== "STREAMING_RESPONSE") return;
    if (this.mpState === "PLAYING" && this.playbackTimer) {
      clearTimeout(this.playbackTimer);
      this.playbackTimer = null;
    }
    if (this.mpState === "FINISHED") {
      this.mpState = "IDLE";
      this.responseFinished();
    }
  }

  private responseFinished(): void {
    if (this.playbackTimer) clearTimeout(this.playbackTimer);
    this.playbackTimer = null;
    this.setState("RESPONSE_FINISHED");
    this.owner?.send(Msg.VoiceAssistantAnnounceFinished, announceFinished(true));
    // Let the media player's result land on the record before a follow-up run or the wake() result.
    setImmediate(() => {
      if (this.state !== "RESPONSE_FINISHED") return;
      // continue_conversation stays as the last INTENT_END set it, as in the firmware.
      if (this.continueConversation && this.owner) {
        const next = newRecord();
        (this.root ?? next).followUps.push(next);
        const speech = this.followUp ?? Buffer.alloc(0);
        this.followUp = null;
        this.startPipeline(speech, next);
      } else {
        this.setState("IDLE");
      }
    });
  }

  private setState(s: VaState): void {
    this.state = s;
    if (s === "IDLE") {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      // The media player's result may still be on its way (a stop): resolve after it.
      setTimeout(() => waiters.forEach((w) => w()), 20);
    }
  }
}
