/**
 * The speech-to-text program. One call per connection: `transcribe {language}`, `audio-start`, then
 * `audio-chunk`s streamed into a warm Realtime conversation as they arrive. The upstream's turn detection
 * ends the turn without a response; `audio-stop` before that commits at once. The `transcript` is
 * written the moment the upstream has it (before `audio-stop` when the speaker stopped first), so a
 * client that reads concurrently and one that reads only after `audio-stop` both get it. Audio and
 * `audio-stop` after the transcript are ignored. The conversation then waits (30 s) for the `handle`
 * call of the same text.
 *
 * The call always ends, even when `audio-stop` never comes (`info` says `requires_external_vad: false`,
 * so Home Assistant runs no end-of-speech detection and no time cap of its own): with no speech heard
 * `wyoming.no_speech_s` after the first audio, the transcript is empty and the conversation ends at
 * once; at `wyoming.max_turn_s` after the first audio the turn is committed as if `audio-stop` had come
 * and the transcript says what was heard. A turn whose audio was all silence (`SpeechGate`) is not
 * committed at `audio-stop`: its transcript is empty.
 */
import { Resampler } from "../audio/resampler.js";
import { SpeechGate } from "../audio/speech-gate.js";
import { pcm16Bytes, pcm16View } from "../audio/pcm.js";
import type { AssistConversation } from "../realtime/conversation.js";
import { onUpstreamLoss, unavailableCode, unavailableSentence, type AssistSessions } from "./assist.js";
import type { AsrEvent, EventOf } from "./events.js";
import { WyomingEvents } from "./events.js";
import type { WyomingAsrProgram, WyomingCall, WyomingCallContext } from "./program.js";

/** After `audio-stop`, how long the upstream may take to transcribe. */
const TRANSCRIPT_TIMEOUT_MS = 15_000;

const SENTENCE = {
  unreachable: "The voice assistant cannot reach OpenAI right now. Please try again in a moment.",
  format: "The speech-to-text service needs 16-bit PCM audio at 16 or 24 kHz.",
  noStart: "Audio arrived before audio-start.",
  slow: "OpenAI did not transcribe the speech in time. Please try again.",
} as const;

type Phase =
  | { readonly name: "waiting" }
  | { readonly name: "starting"; readonly ready: Promise<AssistConversation | null> }
  | { readonly name: "listening"; readonly conversation: AssistConversation }
  | { readonly name: "done" };

class AsrCall implements WyomingCall<AsrEvent> {
  readonly #ctx: WyomingCallContext;
  readonly #sessions: AssistSessions;
  #phase: Phase = { name: "waiting" };
  #language: string | undefined;
  #resampler: Resampler | null = null;
  #channels = 1;
  #appendedBytes = 0;
  /** When the user stopped speaking: upstream end of speech, or `audio-stop` that committed. */
  #endOfSpeech: number | null = null;
  #committed = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  /** The no-speech and longest-turn deadlines, armed by the first audio. */
  #deadlines: NodeJS.Timeout[] | null = null;
  /** The upstream heard speech start. */
  #heardSpeech = false;
  /** Whether the audio held anything louder than a quiet room (a false wake commits nothing). */
  readonly #gate = new SpeechGate();
  /** Upstream audio that arrived while the conversation was being taken. */
  #pending: Buffer[] = [];
  #unsubscribe: () => void = () => undefined;

  constructor(ctx: WyomingCallContext, sessions: AssistSessions) {
    this.#ctx = ctx;
    this.#sessions = sessions;
  }

  handle(event: AsrEvent): void {
    if (this.#phase.name === "done") return;
    switch (event.type) {
      case "transcribe":
        this.#language = event.language;
        this.#begin();
        return;
      case "audio-start":
        if (!this.#setFormat(event)) return;
        this.#begin();
        return;
      case "audio-chunk":
        return this.#onChunk(event);
      case "audio-stop":
        return this.#onStop();
    }
  }

  close(): void {
    this.#resampler?.dispose();
    this.#clearTimers();
    this.#unsubscribe();
    const phase = this.#phase;
    this.#phase = { name: "done" };
    if (phase.name === "listening") this.#sessions.discard(phase.conversation);
    if (phase.name === "starting") void phase.ready.then((c) => c && this.#sessions.discard(c));
  }

  /** Takes a conversation (warm) as soon as the call starts; audio waits for it without blocking reads. */
  #begin(): void {
    if (this.#phase.name !== "waiting") return;
    const ready = this.#sessions.listen().then(
      (conversation) => {
        if (this.#phase.name !== "starting") {
          this.#sessions.discard(conversation);
          return null;
        }
        this.#phase = { name: "listening", conversation };
        if (this.#language !== undefined) conversation.setInputLanguage(this.#language);
        this.#follow(conversation);
        for (const pcm of this.#pending) this.#append(conversation, pcm);
        this.#pending = [];
        if (this.#stopped) this.#commitNow(conversation);
        return conversation;
      },
      (err: unknown) => {
        this.#ctx.logger.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "speech-to-text: no upstream conversation",
        );
        this.#fail(unavailableCode(err), unavailableSentence(err, SENTENCE.unreachable));
        return null;
      },
    );
    this.#phase = { name: "starting", ready };
  }

  #setFormat(f: { rate: number; width: number; channels: number }): boolean {
    if (f.width !== 2 || (f.rate !== 16000 && f.rate !== 24000)) {
      this.#fail("bad_audio", SENTENCE.format);
      return false;
    }
    if (this.#resampler?.inRate !== f.rate || this.#channels !== f.channels) {
      this.#resampler?.dispose();
      this.#resampler = new Resampler({ inRate: f.rate, outRate: 24000 });
      this.#channels = f.channels;
    }
    return true;
  }

  #onChunk(event: EventOf<"audio-chunk">): void {
    if (this.#stopped || this.#endOfSpeech !== null) return;
    if (!this.#setFormat(event)) return;
    if (event.audio.length % (2 * event.channels) !== 0) return void this.#fail("bad_audio", SENTENCE.format);
    if (this.#phase.name === "waiting") this.#begin();
    this.#deadlines ??= this.#armDeadlines();
    const pcm = this.#toUpstream(event.audio);
    if (pcm.length === 0) return;
    if (this.#phase.name === "listening") this.#append(this.#phase.conversation, pcm);
    else this.#pending.push(pcm);
  }

  #armDeadlines(): NodeJS.Timeout[] {
    const { noSpeechMs, maxTurnMs } = this.#sessions.listening;
    const quiet = setTimeout(() => {
      if (this.#heardSpeech || this.#stopped || this.#endOfSpeech !== null) return;
      this.#ctx.logger.info({ seconds: noSpeechMs / 1000 }, "speech-to-text: no speech heard, giving up");
      void this.#send("");
    }, noSpeechMs);
    const longest = setTimeout(() => {
      if (this.#stopped || this.#endOfSpeech !== null) return;
      this.#ctx.logger.info({ seconds: maxTurnMs / 1000 }, "speech-to-text: longest turn reached");
      this.#onStop();
    }, maxTurnMs);
    quiet.unref();
    longest.unref();
    return [quiet, longest];
  }

  #clearTimers(): void {
    clearTimeout(this.#timer);
    for (const t of this.#deadlines ?? []) clearTimeout(t);
  }

  #onStop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#phase.name === "listening") this.#commitNow(this.#phase.conversation);
    // Starting: the commit follows once the conversation is there.
    if (this.#phase.name === "waiting") void this.#send("");
  }

  /** Commits what was heard unless the upstream already ended the turn; bounds the wait for the text. */
  #commitNow(conversation: AssistConversation): void {
    this.#timer = setTimeout(() => this.#fail("upstream_unavailable", SENTENCE.slow), TRANSCRIPT_TIMEOUT_MS);
    this.#timer.unref();
    // The upstream already ended the turn (speech stopped): its commit is on the way.
    if (this.#committed || this.#endOfSpeech !== null) return;
    // Silence is neither transcribed (a model may make words of it) nor answered: an empty transcript.
    if (this.#appendedBytes === 0 || (!this.#heardSpeech && this.#gate.take() === "silent"))
      return void this.#send("");
    this.#endOfSpeech = performance.now();
    conversation.commit();
  }

  #toUpstream(audio: Buffer): Buffer {
    let samples = pcm16View(audio);
    if (this.#channels > 1) {
      const mono = new Int16Array(samples.length / this.#channels);
      for (let i = 0; i < mono.length; i++) {
        let sum = 0;
        for (let c = 0; c < this.#channels; c++) sum += samples[i * this.#channels + c]!;
        mono[i] = Math.round(sum / this.#channels);
      }
      samples = mono;
    }
    const out = this.#resampler ? this.#resampler.process(samples) : samples;
    return Buffer.from(pcm16Bytes(out));
  }

  #append(conversation: AssistConversation, pcm: Buffer): void {
    this.#appendedBytes += pcm.length;
    this.#gate.push(pcm);
    conversation.appendAudio(pcm);
  }

  #follow(conversation: AssistConversation): void {
    let itemId: string | null = null;
    const started = (): void => {
      this.#heardSpeech = true;
    };
    const stopped = (): void => {
      this.#endOfSpeech ??= performance.now();
    };
    const committed = ({ itemId: id }: { itemId: string }): void => {
      if (itemId !== null) return;
      itemId = id;
      this.#committed = true;
      this.#endOfSpeech ??= performance.now();
    };
    // After a drop the turn's first words are gone upstream: no transcript of the rest is taken.
    let dropped = false;
    const lost = (): void => {
      dropped = true;
    };
    const transcript = (e: { itemId: string; text: string }): void => {
      if (dropped || (itemId !== null && e.itemId !== itemId)) return;
      this.#sessions.heard(e.text, conversation);
      void this.#send(e.text);
    };
    const failed = (e: { itemId: string; message: string }): void => {
      if (itemId !== null && e.itemId !== itemId) return;
      this.#ctx.logger.info(
        { reason: e.message },
        "speech-to-text: the upstream could not transcribe the turn",
      );
      void this.#send("");
    };
    const offLoss = onUpstreamLoss(conversation, SENTENCE.unreachable, (sentence) =>
      this.#fail("upstream_unavailable", sentence),
    );
    conversation.on("speech.started", started);
    conversation.on("speech.stopped", stopped);
    conversation.turns.on("input.committed", committed);
    conversation.turns.on("user.transcript", transcript);
    conversation.turns.on("user.transcript.failed", failed);
    conversation.turns.on("upstream.lost", lost);
    this.#unsubscribe = () => {
      offLoss();
      conversation.turns.off("upstream.lost", lost);
      conversation.off("speech.started", started);
      conversation.off("speech.stopped", stopped);
      conversation.turns.off("input.committed", committed);
      conversation.turns.off("user.transcript", transcript);
      conversation.turns.off("user.transcript.failed", failed);
    };
  }

  /** Writes the transcript once; later audio is ignored. The conversation is left to `handle`. */
  async #send(text: string): Promise<void> {
    if (this.#phase.name === "done") return;
    this.#clearTimers();
    this.#unsubscribe();
    this.#unsubscribe = () => undefined;
    if (this.#endOfSpeech !== null)
      this.#ctx.turn.stage("transcript", (performance.now() - this.#endOfSpeech) / 1000);
    const phase = this.#phase;
    this.#phase = { name: "done" };
    if (phase.name === "listening" && text === "") this.#sessions.discard(phase.conversation);
    this.#ctx.logger.debug({ chars: text.length }, "speech-to-text: transcript");
    await this.#ctx.peer.write(
      WyomingEvents.transcript({
        text,
        ...(this.#language !== undefined ? { language: this.#language } : {}),
      }),
    );
    this.#ctx.turn.finish("success");
  }

  #fail(code: "upstream_unavailable" | "bad_audio" | "budget_exceeded", text: string): void {
    if (this.#phase.name === "done") return;
    this.#clearTimers();
    this.#ctx.turn.finish("error");
    this.#ctx.peer.fail(code, text);
    this.close();
  }
}

/** The ASR program over the shared `AssistSessions`. */
export function createAsrProgram(sessions: AssistSessions): WyomingAsrProgram {
  return {
    supportsTranscriptStreaming: false,
    open: (ctx) => new AsrCall(ctx, sessions),
  };
}
