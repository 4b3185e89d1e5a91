/**
 * The text-to-speech program. `synthesize {text, voice?}` → `audio-start`, `audio-chunk`s, `audio-stop`,
 * all PCM16 mono at 24 kHz (the Realtime API's own rate: no resampling, nothing lost; Home Assistant
 * builds its WAV from the first chunk's format and converts if it must).
 *
 * When the text (whitespace-normalised) is an answer the conversation agent gave in the last 60 s and
 * the requested voice is absent or the conversations' own (`openai.voice`), the audio is the model's own
 * audio of that answer, kept from the response: the first chunk goes out at once. Any other text (Home
 * Assistant's own answers, errors, `tts.speak`), and an answer asked for in another voice, is read
 * verbatim by the model in the requested (or configured) voice through an out-of-band response that
 * enters no conversation and names that voice, on a speaker session of that voice: one assistant, one
 * voice, whoever wrote the sentence.
 *
 * Streaming calls (`synthesize-start`, `synthesize-chunk`…, `synthesize`, `synthesize-stop`) get one
 * audio stream for the whole text, then `synthesize-stopped`. The stream starts on `synthesize` (the
 * whole text, which Home Assistant sends right after the last chunk) or, failing that, `synthesize-stop`.
 */
import { VOICES } from "../config/model.js";
import type { WyomingErrorCode } from "../errors.js";
import { unavailableSentence, type AssistSessions } from "./assist.js";
import type { SynthesizeVoice, TtsEvent } from "./events.js";
import { WyomingEvents, type AudioFormat } from "./events.js";
import type { WyomingCall, WyomingCallContext, WyomingTtsProgram } from "./program.js";

/** The format of every reply. */
export const TTS_FORMAT: AudioFormat = { rate: 24000, width: 2, channels: 1 };

const SENTENCE = {
  unreachable: "The voice assistant cannot reach OpenAI to speak right now. Please try again in a moment.",
  failed: "OpenAI could not speak this text. Please try again.",
} as const;

const KNOWN_VOICES: ReadonlySet<string> = new Set(VOICES);

class TtsCall implements WyomingCall<TtsEvent> {
  readonly #ctx: WyomingCallContext;
  readonly #sessions: AssistSessions;
  readonly #started = performance.now();
  #streaming = false;
  #voice: string | undefined;
  #text = "";
  /** The one audio stream of this call, once started. */
  #run: Promise<boolean> | null = null;
  #over = false;

  constructor(ctx: WyomingCallContext, sessions: AssistSessions) {
    this.#ctx = ctx;
    this.#sessions = sessions;
  }

  async handle(event: TtsEvent): Promise<void> {
    if (this.#over) return;
    switch (event.type) {
      case "synthesize":
        if (this.#streaming) {
          // The whole text again, for servers that do not stream: start from it if nothing started yet.
          this.#run ??= this.#speak(event.text);
          return;
        }
        this.#voice = voiceName(event.voice);
        this.#over = true;
        if (await this.#speak(event.text)) this.#ctx.turn.finish("success");
        return;
      case "synthesize-start":
        this.#streaming = true;
        this.#voice = voiceName(event.voice);
        return;
      case "synthesize-chunk":
        this.#streaming = true;
        // Not matched yet: a kept answer may be only the start of the whole text.
        this.#text += event.text;
        return;
      case "synthesize-stop": {
        this.#over = true;
        const ok = await (this.#run ?? this.#speak(this.#text));
        if (!ok) return;
        await this.#ctx.peer.write(WyomingEvents.synthesizeStopped());
        this.#ctx.turn.finish("success");
        return;
      }
    }
  }

  close(): void {
    this.#over = true;
  }

  /** Streams the audio of `text`; resolves true once `audio-stop` is written, false after a failure. */
  async #speak(text: string): Promise<boolean> {
    const { peer, turn, logger } = this.#ctx;
    let chunks = 0;
    const write = (pcm: Buffer): void => {
      if (chunks++ === 0) turn.stage("first_audio", (performance.now() - this.#started) / 1000);
      void peer.write(WyomingEvents.audioChunk(TTS_FORMAT, pcm));
    };
    void peer.write(WyomingEvents.audioStart(TTS_FORMAT));
    const kept = this.#sessions.answer(text, this.#voice);
    if (kept) {
      logger.debug("text-to-speech: the model's own audio of a handled answer");
      await new Promise<void>((resolve) => kept.read(write, () => resolve()));
    } else if (text.trim()) {
      try {
        await this.#sessions.engine.speak(text, {
          ...(this.#voice !== undefined ? { voice: this.#voice } : {}),
          onAudio: write,
          signal: peer.signal,
        });
      } catch (err) {
        if (peer.closed) return false;
        const message = err instanceof Error ? err.message : String(err);
        // The session rejects a refused or failed response with "speech …"; anything else is the connection.
        const code: WyomingErrorCode = message.startsWith("speech ")
          ? "response_failed"
          : "upstream_unavailable";
        logger.warn({ err: message, chunks }, "text-to-speech: the model did not speak the text");
        turn.finish("error");
        peer.fail(
          code,
          code === "upstream_unavailable" ? unavailableSentence(err, SENTENCE.unreachable) : SENTENCE.failed,
        );
        return false;
      }
    }
    await peer.write(WyomingEvents.audioStop());
    return true;
  }
}

/** A voice Home Assistant picked from `info` (by name); anything else means the configured voice. */
function voiceName(voice: SynthesizeVoice | undefined): string | undefined {
  return voice?.name !== undefined && KNOWN_VOICES.has(voice.name) ? voice.name : undefined;
}

/** The text-to-speech program over the shared `AssistSessions`. */
export function createTtsProgram(sessions: AssistSessions): WyomingTtsProgram {
  return {
    supportsSynthesizeStreaming: true,
    open: (ctx) => new TtsCall(ctx, sessions),
  };
}
