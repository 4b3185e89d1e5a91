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
  /** The last microphone output as a Buffer over the resampler's own output (reused while it fits). */
  #micView: Buffer = Buffer.alloc(0);

  constructor(inRate: PcmRate, outRate: PcmRate) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.#up = new Resampler({ inRate, outRate: PCM_RATE_UPSTREAM });
    this.#down = new Resampler({ inRate: PCM_RATE_UPSTREAM, outRate });
  }

  /**
   * Microphone frame (PCM16 at `inRate`, even length) → 24 kHz PCM16 (possibly empty), without
   * allocating: the result is a view valid until the next `micToUpstream` call on this pipe (at
   * 24 kHz, `frame` itself). A caller that keeps it must copy it.
   */
  micToUpstream(frame: Buffer): Buffer {
    if (this.inRate === PCM_RATE_UPSTREAM) return frame;
    const out = this.#up.processPcm(frame);
    const view = this.#micView;
    if (
      view.buffer !== out.buffer ||
      view.byteOffset !== out.byteOffset ||
      view.byteLength !== out.byteLength
    )
      this.#micView = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    return this.#micView;
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

  /** The connection is over: the resamplers hand their memory back (a later call would take it again). */
  dispose(): void {
    this.#up.dispose();
    this.#down.dispose();
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
