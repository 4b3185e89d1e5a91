/**
 * The resampling of one satellite connection: PCM16 frames off the wire ⇄ 24 kHz PCM at the
 * Conversation seam. A direction whose declared rate is already 24 kHz is passed through.
 * Assumes a little-endian host (PCM s16le is read through Int16Array views).
 */
import { Resampler, type PcmRate } from "../audio/resampler.js";

/** The Realtime API's PCM rate: what crosses the Conversation seam. */
export const PCM_RATE_UPSTREAM = 24_000;

export class AudioPipe {
  readonly inRate: PcmRate;
  readonly outRate: PcmRate;
  readonly #up: Resampler;
  readonly #down: Resampler;
  /** Aligned copy of an odd-offset input frame (Int16Array views need 2-byte alignment). */
  #scratch = new Int16Array(1024);

  constructor(inRate: PcmRate, outRate: PcmRate) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.#up = new Resampler({ inRate, outRate: PCM_RATE_UPSTREAM });
    this.#down = new Resampler({ inRate: PCM_RATE_UPSTREAM, outRate });
  }

  /** Microphone frame (PCM16 at `inRate`, even length) → a fresh 24 kHz Buffer (possibly empty). */
  micToUpstream(frame: Buffer): Buffer {
    if (this.inRate === PCM_RATE_UPSTREAM) return frame;
    const out = this.#up.process(this.#samplesOf(frame));
    return Buffer.from(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength));
  }

  /** 24 kHz reply audio → samples at `outRate`; a view valid until the next call on this pipe. */
  upstreamToSpeaker(pcm: Buffer): Int16Array {
    const samples = this.#samplesOf(pcm);
    return this.outRate === PCM_RATE_UPSTREAM ? samples : this.#down.process(samples);
  }

  /** Ends one reply's stream: the resampler's tail (view valid until the next call), state reset. */
  flushSpeaker(): Int16Array {
    return this.#down.flush();
  }

  /** Drops the reply resampler's state (after a barge-in). */
  resetSpeaker(): void {
    this.#down.reset();
  }

  #samplesOf(buf: Buffer): Int16Array {
    const n = buf.byteLength >> 1;
    if ((buf.byteOffset & 1) === 0) return new Int16Array(buf.buffer, buf.byteOffset, n);
    if (this.#scratch.length < n) this.#scratch = new Int16Array(Math.max(n, this.#scratch.length * 2));
    const view = this.#scratch.subarray(0, n);
    new Uint8Array(view.buffer, view.byteOffset, n * 2).set(buf.subarray(0, n * 2));
    return view;
  }
}
