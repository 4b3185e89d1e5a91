/**
 * Whether a turn's microphone audio held anything worth answering (pure, streaming): a turn is heard
 * when at least `minLoudMs` of it came in 20 ms frames louder than `thresholdDbfs` (RMS). Silence and
 * a quiet room's hiss stay below -50 dBFS; speech at a satellite is around -35 to -15 dBFS.
 */
import { pcm16View } from "./pcm.js";

const FRAME_SAMPLES = 480; // 20 ms at 24 kHz

export interface SpeechGateOptions {
  /** RMS level of a loud frame, dB below full scale. Default -50. */
  readonly thresholdDbfs?: number;
  /** Loud audio needed for a turn to count as heard. Default 60 ms. */
  readonly minLoudMs?: number;
}

export class SpeechGate {
  readonly #threshold: number;
  readonly #minFrames: number;
  #samples = 0;
  #sumSquares = 0;
  #loudFrames = 0;
  #bytes = 0;

  constructor(opts: SpeechGateOptions = {}) {
    // Compared against the mean of squares, so the amplitude threshold is squared.
    this.#threshold = (10 ** ((opts.thresholdDbfs ?? -50) / 20) * 32768) ** 2;
    this.#minFrames = Math.max(1, Math.ceil((opts.minLoudMs ?? 60) / 20));
  }

  /** Adds PCM16 LE mono 24 kHz audio (any length; an odd trailing byte is ignored). */
  push(pcm: Buffer): void {
    this.#bytes += pcm.length;
    if (this.#loudFrames >= this.#minFrames) return;
    const even = pcm.length & ~1;
    const samples = pcm16View(even === pcm.length ? pcm : pcm.subarray(0, even));
    // Locals in the loop, fields written back once: this runs on every microphone frame.
    let sumSquares = this.#sumSquares;
    let count = this.#samples;
    let loud = this.#loudFrames;
    for (let i = 0; i < samples.length; i++) {
      const s = samples[i]!;
      sumSquares += s * s;
      if (++count < FRAME_SAMPLES) continue;
      if (sumSquares / FRAME_SAMPLES >= this.#threshold) loud++;
      count = 0;
      sumSquares = 0;
    }
    this.#sumSquares = sumSquares;
    this.#samples = count;
    this.#loudFrames = loud;
  }

  /**
   * The verdict on the audio since the last call, which starts a new turn: `heard`, `silent` (audio
   * came, none of it loud enough), or `none` (no audio at all).
   */
  take(): "heard" | "silent" | "none" {
    const verdict = this.#bytes === 0 ? "none" : this.#loudFrames >= this.#minFrames ? "heard" : "silent";
    this.#samples = 0;
    this.#sumSquares = 0;
    this.#loudFrames = 0;
    this.#bytes = 0;
    return verdict;
  }
}
