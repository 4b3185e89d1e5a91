/**
 * Streaming polyphase resampler for PCM16 mono between the two rates the system speaks:
 * 16 kHz (Assist satellites) and 24 kHz (the Realtime API).
 *
 * Design: one linear-phase low-pass prototype at the common rate of 48 kHz (Kaiser-windowed sinc,
 * 193 taps = 4 ms, β = 4.5, −6 dB at 7.7 kHz, i.e. just under the 8 kHz Nyquist of the lower rate),
 * split into polyphase branches once at construction. 16→24 kHz is ↑3 ↓2, 24→16 kHz is ↑2 ↓3.
 * Each "cycle" turns M input samples into L output samples with a single pass over the history
 * (one load per input sample feeds all L branch accumulators), so the hot loop costs about
 * 66 (16→24) or 98 (24→16) multiply-adds per output sample and allocates nothing.
 *
 * The filter is linear phase: the output lags the input by exactly {@link Resampler.delaySamples}
 * output samples (2 ms at either rate), an integer so callers can align without interpolation.
 */

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
  /** Taps per cycle window; branch k of the cycle uses `#coef[d * L + k]` for d in [0, #taps). */
  readonly #taps: number;
  /** Zero history that makes the filter causal: input sample 0 sits at history index `#prefill`. */
  readonly #prefill: number;
  readonly #coef: Float64Array;

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
      this.#coef = new Float64Array(0);
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
      this.#coef = new Float64Array(this.#taps * L);
      for (let k = 0; k < L; k++) {
        for (let d = 0; d < this.#taps; d++) {
          const i = M * k + L * this.#prefill - L * d;
          this.#coef[d * L + k] = i >= 0 && i < prototype.length ? prototype[i]! : 0;
        }
      }
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
    const L = this.#up;
    const produced = cycles * L;
    if (this.#output.length < produced) {
      this.#output = new Int16Array(produced + L);
    }
    if (L === 3) this.#cycles3(cycles);
    else this.#cycles2(cycles);
    const consumed = cycles * this.#down;
    this.#history.copyWithin(0, consumed, this.#historyLength);
    this.#historyLength -= consumed;
    this.#outputCount += keep;
    if (this.#view.length !== keep || this.#view.buffer !== this.#output.buffer) {
      this.#view = this.#output.subarray(0, keep);
    }
    return this.#view;
  }

  /**
   * L = 3 (16→24 kHz). Two cycles per pass: six independent accumulators keep more additions in
   * flight than three would, while each sum still adds the same products in the same order as a
   * cycle computed alone (the output is bit-identical either way).
   */
  #cycles3(cycles: number): void {
    const history = this.#history;
    const coef = this.#coef;
    const out = this.#output;
    const taps = this.#taps;
    const step = this.#down;
    let o = 0;
    let c = 0;
    for (let base = 0; c + 1 < cycles; c += 2, base += 2 * step) {
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let b0 = 0;
      let b1 = 0;
      let b2 = 0;
      for (let d = 0, j = 0; d < taps; d++, j += 3) {
        const x = history[base + d]!;
        const y = history[base + step + d]!;
        const k0 = coef[j]!;
        const k1 = coef[j + 1]!;
        const k2 = coef[j + 2]!;
        a0 += x * k0;
        a1 += x * k1;
        a2 += x * k2;
        b0 += y * k0;
        b1 += y * k1;
        b2 += y * k2;
      }
      out[o++] = toPcm16(a0);
      out[o++] = toPcm16(a1);
      out[o++] = toPcm16(a2);
      out[o++] = toPcm16(b0);
      out[o++] = toPcm16(b1);
      out[o++] = toPcm16(b2);
    }
    if (c < cycles) this.#oneCycle(c * step, o);
  }

  /** L = 2 (24→16 kHz). Two cycles per pass, as in {@link #cycles3}. */
  #cycles2(cycles: number): void {
    const history = this.#history;
    const coef = this.#coef;
    const out = this.#output;
    const taps = this.#taps;
    const step = this.#down;
    let o = 0;
    let c = 0;
    for (let base = 0; c + 1 < cycles; c += 2, base += 2 * step) {
      let a0 = 0;
      let a1 = 0;
      let b0 = 0;
      let b1 = 0;
      for (let d = 0, j = 0; d < taps; d++, j += 2) {
        const x = history[base + d]!;
        const y = history[base + step + d]!;
        const k0 = coef[j]!;
        const k1 = coef[j + 1]!;
        a0 += x * k0;
        a1 += x * k1;
        b0 += y * k0;
        b1 += y * k1;
      }
      out[o++] = toPcm16(a0);
      out[o++] = toPcm16(a1);
      out[o++] = toPcm16(b0);
      out[o++] = toPcm16(b1);
    }
    if (c < cycles) this.#oneCycle(c * step, o);
  }

  /** A cycle left over after the pairs, for any L: the same sums, in the same order. */
  #oneCycle(base: number, o: number): void {
    const L = this.#up;
    const history = this.#history;
    const coef = this.#coef;
    for (let k = 0; k < L; k++) {
      let acc = 0;
      for (let d = 0, j = k; d < this.#taps; d++, j += L) acc += history[base + d]! * coef[j]!;
      this.#output[o + k] = toPcm16(acc);
    }
  }

  #ensureHistory(length: number): void {
    if (length <= this.#history.length) return;
    const grown = new Float64Array(Math.max(length, this.#history.length * 2));
    grown.set(this.#history.subarray(0, this.#historyLength));
    this.#history = grown;
  }
}

/** Rounds half away from zero and saturates to the PCM16 range. */
function toPcm16(v: number): number {
  if (v >= 32766.5) return 32767;
  if (v <= -32767.5) return -32768;
  return v < 0 ? (v - 0.5) | 0 : (v + 0.5) | 0;
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
