/**
 * What a listener says to a conversation while it has no upstream session (between a drop and the
 * reconnect): kept in order, bounded, and replayed into the next session, so a turn started during a
 * reconnect is answered once the upstream is back instead of being lost.
 */
import type { RealtimeSession } from "./session.js";

/** Microphone audio kept while reconnecting: 10 s of PCM16 at 24 kHz; later audio is dropped. */
const MAX_HELD_BYTES = 10 * 48_000;

type Held = (session: RealtimeSession) => void;

export class HeldTurn {
  #steps: Held[] = [];
  #bytes = 0;

  /** Something is waiting for an upstream session (audio, a commit, a request, a text). */
  get waiting(): boolean {
    return this.#steps.length > 0;
  }

  audio(pcm: Buffer): void {
    if (this.#bytes + pcm.length > MAX_HELD_BYTES) return;
    this.#bytes += pcm.length;
    const copy = Buffer.from(pcm);
    this.#steps.push((s) => s.appendAudio(copy));
  }

  /** Any other command, replayed after the audio held before it. */
  step(fn: Held): void {
    this.#steps.push(fn);
  }

  /** Replays everything into `session`, in order, and forgets it. */
  replay(session: RealtimeSession): void {
    const steps = this.#steps;
    this.clear();
    for (const fn of steps) fn(session);
  }

  clear(): void {
    this.#steps = [];
    this.#bytes = 0;
  }
}
