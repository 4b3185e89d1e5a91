/**
 * Streaming polyphase resampler for PCM16 mono between the two rates the system speaks:
 * 16 kHz (Assist satellites) and 24 kHz (the Realtime API).
 *
 * Design: one linear-phase low-pass prototype at the common rate of 48 kHz (Kaiser-windowed sinc,
 * 193 taps = 4 ms, β = 4.5, −6 dB at 7.7 kHz, i.e. just under the 8 kHz Nyquist of the lower rate),
 * split into polyphase branches once at construction. 16→24 kHz is ↑3 ↓2, 24→16 kHz is ↑2 ↓3.
 * Each "cycle" turns M input samples into L output samples with a single pass over the history
 * (one load per input sample feeds all L branch accumulators), about 66 (16→24) or 98 (24→16)
 * multiply-adds per output sample. The cycles run in WebAssembly (resampler.wat), each sum added tap
 * by tap in the order a scalar loop would, without fused multiply-adds, so the samples are the ones
 * plain JavaScript computes in the same precision: 16→24 kHz (every microphone frame) in single
 * precision, eight cycles per pass in f32x4 lanes; 24→16 kHz in double precision, four per pass in
 * f64x2 lanes. Single precision's error is far below the PCM16 output's own rounding: a sample
 * differs from double precision's by one step in about one in 10 000 (one in 800 for a full-scale
 * sweep), and the SNR figures do not move (test/audio-resampler.test.ts). Nothing is allocated per
 * chunk.
 * Each stream's history stays in the module's memory between chunks (see {@link Resampler.dispose}):
 * a chunk crosses as PCM16 in and out, its conversion and the history's shift run there too.
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

/**
 * One run of the kernel: `cycles` cycles over the `length` history samples at `history`, samples
 * out at `out`, then the consumed input dropped from the history; byte offsets into its memory.
 * `split`: the history's layout, {@link SPLIT_BYTES}.
 */
type KernelRun = (
  history: number,
  coef: number,
  taps: number,
  cycles: number,
  out: number,
  length: number,
  split: number,
) => void;
/** Appends `samples` PCM16 samples at `stage` to the `length` history samples at `history`. */
type KernelFeed = (history: number, length: number, stage: number, samples: number, split: number) => void;

/**
 * Byte layout of the kernel's memory: the two coefficient tables, a staging area for one chunk of
 * PCM16 input, then one region per resampler that has a stream open (its history, then room for
 * the samples of one chunk). Regions are handed back by `dispose` (or when the resampler is
 * collected) and reused; the memory grows when none is free, so views on it are re-taken then.
 */
const COEF_AT = { 3: 0, 2: 2048 } as const;
const STAGE_AT = 4096;
/** HISTORY_CAPACITY zero samples (PCM16), never written: fed as the zero history and the tail's silence. */
const ZEROS_AT = 6144;
/** History samples a region holds: the taps plus a 20 ms frame at 24 kHz, with room to spare. */
const HISTORY_CAPACITY = 640;
/** Input samples are staged (PCM16) at STAGE_AT, at most HISTORY_CAPACITY of them per kernel call. */
const REGIONS_AT = 8192;
/** The history, with room in each part of its layout for the stale reads of a last pass. */
const HISTORY_BYTES = (HISTORY_CAPACITY + 32) * 8;
/**
 * The history's layout (resampler.wat): split by sample index mod M, so that the samples
 * neighbouring cycles read are neighbours. Sample M·i + r is at byte `r · SPLIT_BYTES[L] + b·i`, with
 * b = 4 at L = 3 (f32) and 8 at L = 2 (f64).
 */
const SPLIT_BYTES = { 3: HISTORY_BYTES / 2, 2: HISTORY_BYTES / 3 } as const;
/** Samples of one chunk at L = 3 (the larger): its cycles and the up to 7 a last pass adds. */
const OUT_BYTES = (Math.floor(HISTORY_CAPACITY / 2) + 8) * 3 * 2;
const REGION_BYTES = Math.ceil((HISTORY_BYTES + OUT_BYTES) / 64) * 64;
const PAGE_BYTES = 65536;

interface Kernel {
  run: Record<2 | 3, KernelRun>;
  feed: Record<2 | 3, KernelFeed>;
  memory: { buffer: ArrayBuffer; grow: (pages: number) => number };
  f32: Float32Array;
  f64: Float64Array;
  pcm: Int16Array;
  bytes: Uint8Array;
  /** Regions handed back, reused before the memory grows. */
  free: number[];
  /** Start of the memory no region has used yet. */
  top: number;
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
    memory: Kernel["memory"];
    up3: KernelRun;
    down2: KernelRun;
    feed3: KernelFeed;
    feed2: KernelFeed;
  };
  kernel = {
    run: { 3: exports.up3, 2: exports.down2 },
    feed: { 3: exports.feed3, 2: exports.feed2 },
    memory: exports.memory,
    f32: new Float32Array(exports.memory.buffer),
    f64: new Float64Array(exports.memory.buffer),
    pcm: new Int16Array(exports.memory.buffer),
    bytes: new Uint8Array(exports.memory.buffer),
    free: [],
    top: REGIONS_AT,
  };
  return kernel;
}

/** A region for one resampler's stream: a free one, else fresh memory (grown by half, at least). */
function takeRegion(k: Kernel): number {
  const reused = k.free.pop();
  if (reused !== undefined) return reused;
  const at = k.top;
  if (at + REGION_BYTES > k.memory.buffer.byteLength) {
    const pages = k.memory.buffer.byteLength / PAGE_BYTES;
    k.memory.grow(Math.max(1, Math.ceil(pages / 2)));
    k.f32 = new Float32Array(k.memory.buffer);
    k.f64 = new Float64Array(k.memory.buffer);
    k.pcm = new Int16Array(k.memory.buffer);
    k.bytes = new Uint8Array(k.memory.buffer);
  }
  k.top = at + REGION_BYTES;
  return at;
}

/** Gives back the region of a resampler collected without `dispose`. */
const collected = new FinalizationRegistry<number>((region) => kernel?.free.push(region));

/** Bytes of WebAssembly memory the resamplers of this process use (it grows, never shrinks). */
export function resamplerMemoryBytes(): number {
  return kernel ? kernel.memory.buffer.byteLength : 0;
}

/**
 * Stateful across calls: feeding a stream whole or in chunks of any length (odd, or one sample)
 * yields the same samples. Not safe to share between streams; use one per direction per connection.
 * Its history lives in the kernel's memory from the first chunk on; `dispose` hands that back when
 * the stream's owner is done (a resampler collected without it gives it back then).
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

  /** Byte offset of this stream's region in the kernel's memory; −1 while it holds none. */
  #region = -1;
  #historyLength = 0;
  #output: Int16Array;
  #view: Int16Array;
  /** The kernel's samples of the last chunk (a view re-taken when its length or the memory changes). */
  #kernelOut: Int16Array = new Int16Array(0);
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
      const table = polyphaseTable(inRate, outRate);
      this.delaySamples = PROTOTYPE_SPAN / (2 * M);
      this.#prefill = table.prefill;
      this.#taps = table.taps;
      const coef = table.coef;
      // The same table for every resampler of this direction: writing it again changes nothing.
      // 16→24 kHz runs in single precision: its table is rounded to f32 here, once.
      this.#kernel = loadKernel();
      if (L === 3) this.#kernel.f32.set(coef, COEF_AT[3] / 4);
      else this.#kernel.f64.set(coef, COEF_AT[2] / 8);
    }
    this.#output = new Int16Array(Math.ceil((INITIAL_FRAME_CAPACITY * L) / M) + L);
    this.#view = this.#output.subarray(0, 0);
    this.reset();
  }

  /**
   * Resamples the next chunk of the stream. The returned array is a view into an internal buffer,
   * valid until the next `process`/`processPcm`/`flush` call; copy it to keep it. Output comes in
   * whole cycles (3 samples at 16→24, 2 at 24→16), so one call may return a few samples more or
   * less than `input.length × out/in`; the running total is exact. Passthrough returns `input` itself.
   */
  process(input: Int16Array): Int16Array {
    if (this.#taps === 0) return input;
    return this.#process(input, input.length, 2);
  }

  /**
   * `process` for PCM16 little-endian bytes at any offset (a trailing odd byte is ignored): the
   * same samples and the same view, without an Int16Array over the input. Passthrough returns a copy.
   */
  processPcm(pcm: Uint8Array): Int16Array {
    const n = pcm.byteLength >> 1;
    if (this.#taps === 0) return new Int16Array(pcm.buffer.slice(pcm.byteOffset, pcm.byteOffset + 2 * n));
    return this.#process(pcm, n, 1);
  }

  /**
   * Ends the stream: returns the remaining samples (the filter's tail, as if silence followed) and
   * resets, ready for a new stream. After `flush` the stream has produced exactly
   * `ceil(inputSamples × out/in) + delaySamples` samples in all.
   */
  flush(): Int16Array {
    if (this.#taps === 0) return this.#output.subarray(0, 0);
    const k = this.#kernel!;
    const region = this.#regionOf(k);
    const total = Math.ceil((this.#inputCount * this.#up) / this.#down) + this.delaySamples;
    const remaining = total - this.#outputCount;
    const cycles = Math.ceil(remaining / this.#up);
    const needed = (cycles - 1) * this.#down + this.#taps;
    if (needed > this.#historyLength) this.#feed(k, region, ZEROS_AT, needed - this.#historyLength);
    this.#ensureOutput(cycles * this.#up);
    this.#run(region, cycles, 0);
    const out = this.#viewOf(remaining);
    this.reset();
    return out;
  }

  /** Drops all state (history, counters) so the next `process` starts a new stream. */
  reset(): void {
    this.#historyLength = 0;
    if (this.#region >= 0) this.#feed(this.#kernel!, this.#region, ZEROS_AT, this.#prefill);
    else this.#historyLength = this.#prefill;
    this.#inputCount = 0;
    this.#outputCount = 0;
  }

  /**
   * Ends the stream without its tail and hands its memory back for other resamplers. Idempotent;
   * the resampler stays usable: a later call starts a new stream, taking memory again.
   */
  dispose(): void {
    if (this.#region >= 0) {
      collected.unregister(this);
      this.#kernel!.free.push(this.#region);
      this.#region = -1;
    }
    this.reset();
  }

  /** Feeds `n` samples (`unit`: 2 for Int16Array input, 1 for bytes) in chunks its region holds. */
  #process(input: Int16Array | Uint8Array, n: number, unit: 1 | 2): Int16Array {
    const k = this.#kernel!;
    const region = this.#regionOf(k);
    const taps = this.#taps;
    const M = this.#down;
    this.#inputCount += n;
    const length = this.#historyLength + n;
    this.#ensureOutput(length >= taps ? (Math.floor((length - taps) / M) + 1) * this.#up : 0);
    let produced = 0;
    for (let at = 0; at < n;) {
      const take = Math.min(n - at, HISTORY_CAPACITY - this.#historyLength);
      if (unit === 2) {
        k.pcm.set(take === input.length ? input : input.subarray(at, at + take), STAGE_AT / 2);
      } else {
        k.bytes.set(2 * take === input.length ? input : input.subarray(2 * at, 2 * (at + take)), STAGE_AT);
      }
      this.#feed(k, region, STAGE_AT, take);
      at += take;
      const h = this.#historyLength;
      produced += this.#run(region, h >= taps ? Math.floor((h - taps) / M) + 1 : 0, produced);
    }
    this.#outputCount += produced;
    return this.#viewOf(produced);
  }

  /** Runs `cycles` cycles, copies their samples to `#output` at `at`, drops the consumed input. */
  #run(region: number, cycles: number, at: number): number {
    const L = this.#up as 2 | 3;
    const k = this.#kernel!;
    const out = region + HISTORY_BYTES;
    k.run[L](region, COEF_AT[L], this.#taps, cycles, out, this.#historyLength, SPLIT_BYTES[L]);
    this.#historyLength -= cycles * this.#down;
    const produced = cycles * L;
    let samples = this.#kernelOut;
    if (samples.length !== produced || samples.buffer !== k.pcm.buffer || samples.byteOffset !== out) {
      samples = this.#kernelOut = k.pcm.subarray(out / 2, out / 2 + produced);
    }
    this.#output.set(samples, at);
    return produced;
  }

  /** Appends `samples` PCM16 samples at `from` (the stage or the zeros) to the history. */
  #feed(k: Kernel, region: number, from: number, samples: number): void {
    const L = this.#up as 2 | 3;
    k.feed[L](region, this.#historyLength, from, samples, SPLIT_BYTES[L]);
    this.#historyLength += samples;
  }

  /** This stream's region, taken (its zero history written) on first use. */
  #regionOf(k: Kernel): number {
    if (this.#region >= 0) return this.#region;
    this.#region = takeRegion(k);
    collected.register(this, this.#region, this);
    this.reset();
    return this.#region;
  }

  #ensureOutput(samples: number): void {
    if (this.#output.length < samples) this.#output = new Int16Array(samples + this.#up);
  }

  #viewOf(keep: number): Int16Array {
    if (this.#view.length !== keep || this.#view.buffer !== this.#output.buffer) {
      this.#view = this.#output.subarray(0, keep);
    }
    return this.#view;
  }
}

/**
 * The filter of a resampler between two different rates, split into its L polyphase branches:
 * branch k, tap d at `coef[d * L + k]`, for `taps` taps; input sample 0 sits at history index
 * `prefill` (the zero history that makes the filter causal). Cycle c (L output samples) reads the
 * history from index c·M on. What the kernel computes, for a scalar reference to check it against.
 */
export function polyphaseTable(
  inRate: PcmRate,
  outRate: PcmRate,
): { L: number; M: number; taps: number; prefill: number; coef: Float64Array } {
  const g = gcd(inRate, outRate);
  const L = outRate / g;
  const M = inRate / g;
  const prototype = designLowPass(
    PROTOTYPE_SPAN + 1,
    (CUTOFF_FRACTION * Math.min(inRate, outRate)) / 2,
    inRate * L,
    L,
  );
  const prefill = Math.floor(PROTOTYPE_SPAN / L);
  const taps = prefill + Math.floor((M * (L - 1)) / L) + 1;
  const coef = new Float64Array(taps * L);
  for (let k = 0; k < L; k++) {
    for (let d = 0; d < taps; d++) {
      const i = M * k + L * prefill - L * d;
      coef[d * L + k] = i >= 0 && i < prototype.length ? prototype[i]! : 0;
    }
  }
  return { L, M, taps, prefill, coef };
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
