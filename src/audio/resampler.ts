/**
 * Streaming polyphase resampler for PCM16 mono between the two rates the system speaks:
 * 16 kHz (Assist satellites) and 24 kHz (the Realtime API).
 *
 * Design: one linear-phase low-pass prototype at the common rate of 48 kHz (Kaiser-windowed sinc,
 * 193 taps = 4 ms, β = 4.5, −6 dB at 7.7 kHz, i.e. just under the 8 kHz Nyquist of the lower rate),
 * split into polyphase branches once at construction. 16→24 kHz is ↑3 ↓2, 24→16 kHz is ↑2 ↓3.
 * Each "cycle" turns M input samples into L output samples with a single pass over the history
 * (one load per input sample feeds all L branch accumulators), about 66 (16→24) or 98 (24→16)
 * multiply-adds per output sample. The cycles run in WebAssembly (resampler.wat): four per pass in
 * SIMD f64x2 lanes, each sum added tap by tap in the order a scalar loop would, so the samples are
 * the ones plain JavaScript computes, about three times faster. Nothing is allocated per chunk.
 *
 * The filter is linear phase: the output lags the input by exactly {@link Resampler.delaySamples}
 * output samples (2 ms at either rate), an integer so callers can align without interpolation.
 */

import { RESAMPLER_KERNEL_BASE64 } from "./resampler-kernel.js";

/** PCM rates a satellite may declare (DESIGN §5) and the Realtime rate. */
export type PcmRate = 16000 | 24000;

export interface ResamplerOptions {
  inRate: PcmRate;
  outRate: PcmRate;
}

/** Prototype filter span at the 48 kHz common rate, in samples (N − 1); 4 ms. */
const PROTOTYPE_SPAN = 192;
/** Kaiser window shape: ≈ 50 dB stopband with this span. */
const KAISER_BETA = 4.5;
/** −6 dB point as a fraction of the lower rate's Nyquist (7.7 kHz of 8 kHz). */
const CUTOFF_FRACTION = 0.9625;
const INITIAL_FRAME_CAPACITY = 2048;

const SUPPORTED_RATES: readonly number[] = [16000, 24000];

/** One run of the kernel: `passes` passes of four cycles; byte offsets into its memory. */
type KernelRun = (history: number, coef: number, taps: number, passes: number, out: number) => void;

/**
 * Byte layout of the kernel's memory (4 pages, fixed: views on it stay valid), shared by every
 * resampler of the process; a call copies its history in and its samples out.
 */
const COEF_AT = { 3: 0, 2: 2048 } as const;
const HISTORY_AT = 4096;
const HISTORY_CAPACITY = 16384;
const OUT_AT = HISTORY_AT + HISTORY_CAPACITY * 8;
/** Cycles per kernel call: a multiple of 4 whose history and samples fit the layout at L = 2 or 3. */
const MAX_CYCLES = 4096;

interface Kernel {
  run: Record<2 | 3, KernelRun>;
  f64: Float64Array;
  pcm: Int16Array;
}

let kernel: Kernel | undefined;

/** What this file uses of the WebAssembly global (the service's build has no DOM typings). */
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
};

/** Compiles the module on first use (a few hundred bytes; synchronous, well under a millisecond). */
function loadKernel(): Kernel {
  if (kernel) return kernel;
  const bytes = Buffer.from(RESAMPLER_KERNEL_BASE64, "base64");
  const exports = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as {
    memory: { buffer: ArrayBuffer };
    up3: KernelRun;
    down2: KernelRun;
  };
  kernel = {
    run: { 3: exports.up3, 2: exports.down2 },
    f64: new Float64Array(exports.memory.buffer),
    pcm: new Int16Array(exports.memory.buffer),
  };
  return kernel;
}

/**
 * Stateful across calls: feeding a stream whole or in chunks of any length (odd, or one sample)
 * yields the same samples. Not safe to share between streams; use one per direction per connection.
 */
export class Resampler {
  readonly inRate: PcmRate;
  readonly outRate: PcmRate;
  /**
   * Group delay in output samples: output sample `n` corresponds to input time `(n − delaySamples) / outRate`.
   * 48 for 16→24 kHz, 32 for 24→16 kHz, 0 for passthrough.
   */
  readonly delaySamples: number;

  /** Upsampling factor L and downsampling factor M; L output samples per M input samples. */
  readonly #up: number;
  readonly #down: number;
  /** Taps per cycle window; branch k of the cycle uses coefficient `d * L + k` for d in [0, #taps). */
  readonly #taps: number;
  /** Zero history that makes the filter causal: input sample 0 sits at history index `#prefill`. */
  readonly #prefill: number;
  /** The shared WebAssembly cycles (absent for passthrough); this direction's table is in its memory. */
  readonly #kernel: Kernel | undefined;

  #history: Float64Array;
  #historyLength = 0;
  #output: Int16Array;
  #view: Int16Array;
  #inputCount = 0;
  #outputCount = 0;

  /** @throws RangeError for a rate other than 16000 or 24000. */
  constructor(options: ResamplerOptions) {
    const { inRate, outRate } = options;
    if (!SUPPORTED_RATES.includes(inRate) || !SUPPORTED_RATES.includes(outRate)) {
      throw new RangeError(
        `unsupported resampling ${String(inRate)} → ${String(outRate)} Hz (16000 or 24000)`,
      );
    }
    this.inRate = inRate;
    this.outRate = outRate;
    const g = gcd(inRate, outRate);
    this.#up = outRate / g;
    this.#down = inRate / g;
    const L = this.#up;
    const M = this.#down;
    if (L === M) {
      this.delaySamples = 0;
      this.#taps = 0;
      this.#prefill = 0;
      this.#kernel = undefined;
    } else {
      const prototype = designLowPass(
        PROTOTYPE_SPAN + 1,
        (CUTOFF_FRACTION * Math.min(inRate, outRate)) / 2,
        inRate * L,
        L,
      );
      this.delaySamples = PROTOTYPE_SPAN / (2 * M);
      this.#prefill = Math.floor(PROTOTYPE_SPAN / L);
      this.#taps = this.#prefill + Math.floor((M * (L - 1)) / L) + 1;
      const coef = new Float64Array(this.#taps * L);
      for (let k = 0; k < L; k++) {
        for (let d = 0; d < this.#taps; d++) {
          const i = M * k + L * this.#prefill - L * d;
          coef[d * L + k] = i >= 0 && i < prototype.length ? prototype[i]! : 0;
        }
      }
      // The same table for every resampler of this direction: writing it again changes nothing.
      this.#kernel = loadKernel();
      this.#kernel.f64.set(coef, COEF_AT[L as 2 | 3] / 8);
    }
    this.#history = new Float64Array(this.#taps + INITIAL_FRAME_CAPACITY);
    this.#output = new Int16Array(Math.ceil((INITIAL_FRAME_CAPACITY * L) / M) + L);
    this.#view = this.#output.subarray(0, 0);
    this.reset();
  }

  /**
   * Resamples the next chunk of the stream. The returned array is a view into an internal buffer,
   * valid until the next `process`/`flush` call; copy it to keep it. Output comes in whole cycles
   * (3 samples at 16→24, 2 at 24→16), so one call may return a few samples more or less than
   * `input.length × out/in`; the running total is exact. Passthrough returns `input` itself.
   */
  process(input: Int16Array): Int16Array {
    if (this.#taps === 0) return input;
    this.#inputCount += input.length;
    this.#ensureHistory(this.#historyLength + input.length);
    const history = this.#history;
    let at = this.#historyLength;
    for (let i = 0; i < input.length; i++) history[at++] = input[i]!;
    this.#historyLength = at;
    const cycles =
      this.#historyLength >= this.#taps ? Math.floor((this.#historyLength - this.#taps) / this.#down) + 1 : 0;
    return this.#run(cycles, cycles * this.#up);
  }

  /**
   * Ends the stream: returns the remaining samples (the filter's tail, as if silence followed) and
   * resets, ready for a new stream. After `flush` the stream has produced exactly
   * `ceil(inputSamples × out/in) + delaySamples` samples in all.
   */
  flush(): Int16Array {
    if (this.#taps === 0) return this.#output.subarray(0, 0);
    const total = Math.ceil((this.#inputCount * this.#up) / this.#down) + this.delaySamples;
    const remaining = total - this.#outputCount;
    const cycles = Math.ceil(remaining / this.#up);
    const needed = (cycles - 1) * this.#down + this.#taps;
    if (needed > this.#historyLength) {
      this.#ensureHistory(needed);
      this.#history.fill(0, this.#historyLength, needed);
      this.#historyLength = needed;
    }
    const out = this.#run(cycles, remaining);
    this.reset();
    return out;
  }

  /** Drops all state (history, counters) so the next `process` starts a new stream. */
  reset(): void {
    this.#history.fill(0, 0, this.#prefill);
    this.#historyLength = this.#prefill;
    this.#inputCount = 0;
    this.#outputCount = 0;
  }

  /** Runs `cycles` whole cycles over the history, keeps the first `keep` samples, drops consumed input. */
  #run(cycles: number, keep: number): Int16Array {
    const L = this.#up as 2 | 3;
    const M = this.#down;
    const produced = cycles * L;
    if (this.#output.length < produced) {
      this.#output = new Int16Array(produced + L);
    }
    const k = this.#kernel!;
    const run = k.run[L];
    for (let done = 0; done < cycles;) {
      const n = Math.min(cycles - done, MAX_CYCLES);
      const from = done * M;
      // The history the n cycles need; the kernel's last pass may read past it (stale, unused).
      k.f64.set(this.#history.subarray(from, from + (n - 1) * M + this.#taps), HISTORY_AT / 8);
      run(HISTORY_AT, COEF_AT[L], this.#taps, Math.ceil(n / 4), OUT_AT);
      this.#output.set(k.pcm.subarray(OUT_AT / 2, OUT_AT / 2 + n * L), done * L);
      done += n;
    }
    const consumed = cycles * M;
    this.#history.copyWithin(0, consumed, this.#historyLength);
    this.#historyLength -= consumed;
    this.#outputCount += keep;
    if (this.#view.length !== keep || this.#view.buffer !== this.#output.buffer) {
      this.#view = this.#output.subarray(0, keep);
    }
    return this.#view;
  }

  #ensureHistory(length: number): void {
    if (length <= this.#history.length) return;
    const grown = new Float64Array(Math.max(length, this.#history.length * 2));
    grown.set(this.#history.subarray(0, this.#historyLength));
    this.#history = grown;
  }
}

/**
 * Kaiser-windowed sinc low-pass of `length` taps at `rate`, −6 dB at `cutoffHz`,
 * scaled so the taps sum to `gain` (L, restoring the level lost to zero-stuffing).
 */
function designLowPass(length: number, cutoffHz: number, rate: number, gain: number): Float64Array {
  const h = new Float64Array(length);
  const centre = (length - 1) / 2;
  const fc = cutoffHz / rate;
  const norm = besselI0(KAISER_BETA);
  let sum = 0;
  for (let i = 0; i < length; i++) {
    const t = i - centre;
    const sinc = t === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * t) / (Math.PI * t);
    const r = t / centre;
    const window = besselI0(KAISER_BETA * Math.sqrt(Math.max(0, 1 - r * r))) / norm;
    h[i] = sinc * window;
    sum += h[i]!;
  }
  for (let i = 0; i < length; i++) h[i] = (h[i]! * gain) / sum;
  return h;
}

/** Modified Bessel function of the first kind, order 0 (power series; converges fast for β ≤ 10). */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 50 && term > sum * 1e-17; k++) {
    term *= q / (k * k);
    sum += term;
  }
  return sum;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
