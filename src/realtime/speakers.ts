/**
 * Speaker sessions: per voice, one warm session kept for out-of-band speech (turn detection off, the
 * voice set before it first speaks), at most `MAX_SPEAKERS` voices at a time. A speech whose speaker
 * went away before any audio is tried once more on a new one.
 */
import type { UsageSink } from "../cost/meter.js";
import type { SpeechOptions } from "./conversation.js";
import type { RealtimeSession } from "./session.js";

/** Voices with a speaker session at a time; the oldest is closed beyond it. */
export const MAX_SPEAKERS = 3;

/** What a speaker needs of a session. */
export type SpeakerSession = Pick<
  RealtimeSession,
  "id" | "state" | "activate" | "prepareSpeaker" | "speak" | "close" | "once" | "usage"
>;

export interface SpeakersOptions<S extends SpeakerSession> {
  /** A ready session (from the warm pool or newly opened) with client turns. */
  readonly acquire: () => Promise<S>;
  /** Where a speaker session's usage is priced. */
  readonly account: (session: S) => UsageSink | undefined;
  /** The engine closed: no speaker is opened any more. */
  readonly closed: () => boolean;
  readonly defaultVoice: string;
}

export class Speakers<S extends SpeakerSession> {
  readonly #o: SpeakersOptions<S>;
  readonly #byVoice = new Map<string, Promise<S>>();

  constructor(opts: SpeakersOptions<S>) {
    this.#o = opts;
  }

  /** See `SpeechSource.speak`: `text` verbatim in `opts.voice` (default voice otherwise). */
  async speak(text: string, opts: SpeechOptions): Promise<void> {
    const voice = opts.voice ?? this.#o.defaultVoice;
    let heard = false;
    const onAudio = (pcm: Buffer): void => {
      heard = true;
      opts.onAudio(pcm);
    };
    try {
      await (await this.speaker(voice)).speak(text, { ...opts, voice, onAudio });
    } catch (err) {
      // A speaker session that went away (expiry, network) before any audio: once more on a new one.
      if (
        heard ||
        opts.signal?.aborted ||
        this.#o.closed() ||
        (err instanceof Error && err.message.startsWith("speech "))
      )
        throw err;
      await (await this.speaker(voice)).speak(text, { ...opts, voice, onAudio });
    }
  }

  /** The speaker session of `voice`, opened on first use; the same promise until it closes or fails. */
  speaker(voice: string = this.#o.defaultVoice): Promise<S> {
    if (this.#o.closed()) return Promise.reject(new Error("the realtime engine is closed"));
    const existing = this.#byVoice.get(voice);
    if (existing) return existing;
    const forget = (): void => {
      if (this.#byVoice.get(voice) === opening) this.#byVoice.delete(voice);
    };
    const opening = this.#o.acquire().then((session) => {
      if (session.state === "closed") throw new Error("the speaker session closed");
      session.activate();
      session.usage = this.#o.account(session);
      session.prepareSpeaker(voice);
      session.once("closed", forget);
      return session;
    });
    this.#byVoice.set(voice, opening);
    opening.catch(forget);
    if (this.#byVoice.size > MAX_SPEAKERS) {
      const [oldest, old] = this.#byVoice.entries().next().value as [string, Promise<S>];
      this.#byVoice.delete(oldest);
      void old.then(
        (s) => s.close(1000, "speaker evicted"),
        () => undefined,
      );
    }
    return opening;
  }
}
