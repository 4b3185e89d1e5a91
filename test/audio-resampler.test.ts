import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { assemble, RESAMPLER_KERNEL } from "../scripts/assemble-wasm.js";
import { RESAMPLER_KERNEL_BASE64 } from "../src/audio/resampler-kernel.js";
import { Resampler, polyphaseTable, resamplerMemoryBytes, type PcmRate } from "../src/audio/resampler.js";
import { parseWav } from "../src/audio/wav.js";

const FIXTURES = new URL("./fixtures/audio/", import.meta.url);

function fixture(name: string): { rate: number; samples: Int16Array } {
  const wav = parseWav(readFileSync(new URL(name, FIXTURES)));
  return { rate: wav.sampleRate, samples: wav.samples };
}

function concat(parts: readonly Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Streams `input` through `r` (a fresh resampler by default) in chunks of the given sizes (cycled), then flushes. */
function stream(
  inRate: PcmRate,
  outRate: PcmRate,
  input: Int16Array,
  sizes: readonly number[],
  r = new Resampler({ inRate, outRate }),
): Int16Array {
  const parts: Int16Array[] = [];
  for (let at = 0, i = 0; at < input.length; i++) {
    const n = sizes[i % sizes.length]!;
    parts.push(r.process(input.subarray(at, at + n)).slice());
    at += n;
  }
  parts.push(r.flush().slice());
  return concat(parts);
}

/**
 * The whole stream through the polyphase table with plain loops: the zero history, the input, then
 * zeros for the tail, cycle after cycle, each output sample summed tap by tap (in `precision`),
 * rounded half away from zero and saturated; as many samples as a stream and its flush give.
 */
function scalarResample(
  x: Int16Array,
  inRate: PcmRate,
  outRate: PcmRate,
  precision: "f32" | "f64",
): Int16Array {
  const { L, M, taps, prefill, coef } = polyphaseTable(inRate, outRate);
  const round = precision === "f32" ? Math.fround : (v: number): number => v;
  const k = Float64Array.from(coef, round);
  const delay = new Resampler({ inRate, outRate }).delaySamples;
  const total = Math.ceil((x.length * L) / M) + delay;
  const cycles = Math.ceil(total / L);
  const history = new Float64Array((cycles - 1) * M + taps);
  history.set(x, prefill);
  const out = new Int16Array(total);
  for (let c = 0; c < cycles; c++) {
    for (let b = 0; b < L && c * L + b < total; b++) {
      let sum = 0;
      for (let d = 0; d < taps; d++) sum = round(sum + round(history[c * M + d]! * k[d * L + b]!));
      const v = Math.trunc(Math.min(Math.max(sum + (sum < 0 ? -0.5 : 0.5), -32768), 32767));
      out[c * L + b] = v;
    }
  }
  return out;
}

function snrDb(ref: Int16Array, out: Int16Array, lag: number): number {
  let signal = 0;
  let error = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = ref[i]! - (out[i + lag] ?? 0);
    signal += ref[i]! * ref[i]!;
    error += e * e;
  }
  return 10 * Math.log10(signal / error);
}

/** Amplitude of the `hz` component of `x` (sampled at `rate`) over [from, to). */
function toneAmplitude(x: Int16Array, rate: number, hz: number, from: number, to: number): number {
  let re = 0;
  let im = 0;
  for (let n = from; n < to; n++) {
    const w = (2 * Math.PI * hz * n) / rate;
    re += x[n]! * Math.cos(w);
    im += x[n]! * Math.sin(w);
  }
  return (2 * Math.hypot(re, im)) / (to - from);
}

function sine(rate: number, hz: number, amplitude: number, length: number): Int16Array {
  const x = new Int16Array(length);
  for (let n = 0; n < length; n++) x[n] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * n) / rate));
  return x;
}

/** Deterministic chunk sizes from 1 to `max`, odd and even. */
function chunkSizes(count: number, max: number, seed: number): number[] {
  let s = seed;
  const sizes: number[] = [];
  for (let i = 0; i < count; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    sizes.push(1 + (s % max));
  }
  return sizes;
}

describe("Resampler quality against sox VHQ", () => {
  const cases = [
    { input: "living_room_16k.wav", reference: "living_room_24k_sox_vhq.wav" },
    { input: "kitchen_light_16k.wav", reference: "kitchen_light_24k_sox_vhq.wav" },
    { input: "sweep_16k.wav", reference: "sweep_24k_sox_vhq.wav" },
    { input: "living_room_24k_sox_vhq.wav", reference: "living_room_24k_to_16k_sox_vhq.wav" },
  ];

  it.each(cases)("$input → $reference: ≥ 40 dB, best lag = the documented delay", ({ input, reference }) => {
    const x = fixture(input);
    const ref = fixture(reference);
    const inRate = x.rate as PcmRate;
    const outRate = ref.rate as PcmRate;
    const delay = new Resampler({ inRate, outRate }).delaySamples;
    // Streamed as a satellite would: 20 ms frames.
    const out = stream(inRate, outRate, x.samples, [inRate / 50]);
    expect(out.length).toBe(ref.samples.length + delay);

    let best = { snr: -Infinity, lag: -1 };
    for (let lag = Math.max(0, delay - 8); lag <= delay + 8; lag++) {
      const snr = snrDb(ref.samples, out, lag);
      if (snr > best.snr) best = { snr, lag };
    }
    expect(best.lag).toBe(delay);
    expect(best.snr).toBeGreaterThanOrEqual(40);
  });

  it("documents its group delay: 48 samples (2 ms) up, 32 samples (2 ms) down, 0 passthrough", () => {
    expect(new Resampler({ inRate: 16000, outRate: 24000 }).delaySamples).toBe(48);
    expect(new Resampler({ inRate: 24000, outRate: 16000 }).delaySamples).toBe(32);
    expect(new Resampler({ inRate: 16000, outRate: 16000 }).delaySamples).toBe(0);
  });

  it("keeps a 1 kHz tone's level and rejects the upsampling images (16→24)", () => {
    const x = sine(16000, 1000, 10000, 16000);
    const y = stream(16000, 24000, x, [320]);
    const level = toneAmplitude(y, 24000, 1000, 2400, 21600);
    expect(Math.abs(20 * Math.log10(level / 10000))).toBeLessThan(0.05);
    // Images of 1 kHz at 15 and 17 kHz (48 kHz stage) land on 9 and 7 kHz at 24 kHz.
    for (const hz of [7000, 9000]) {
      expect(20 * Math.log10(toneAmplitude(y, 24000, hz, 2400, 21600) / 10000)).toBeLessThan(-45);
    }
  });

  it("rejects content above 8 kHz instead of aliasing it (24→16)", () => {
    const x = sine(24000, 10000, 10000, 24000);
    const y = stream(24000, 16000, x, [480]);
    // 10 kHz would alias to 6 kHz.
    expect(20 * Math.log10(toneAmplitude(y, 16000, 6000, 1600, 14400) / 10000)).toBeLessThan(-45);
    const pass = stream(24000, 16000, sine(24000, 3000, 10000, 24000), [480]);
    expect(Math.abs(20 * Math.log10(toneAmplitude(pass, 16000, 3000, 1600, 14400) / 10000))).toBeLessThan(
      0.05,
    );
  });
});

describe("Resampler streaming", () => {
  const speech16 = fixture("living_room_16k.wav").samples;
  const speech24 = fixture("living_room_24k_sox_vhq.wav").samples;

  it.each([
    { inRate: 16000 as const, outRate: 24000 as const, input: speech16 },
    { inRate: 24000 as const, outRate: 16000 as const, input: speech24 },
  ])(
    "$inRate → $outRate: chunked output equals whole output, any chunk sizes",
    ({ inRate, outRate, input }) => {
      const whole = stream(inRate, outRate, input, [input.length]);
      const chunked = stream(inRate, outRate, input, chunkSizes(500, 701, inRate));
      expect(chunked.length).toBe(whole.length);
      expect(Buffer.from(chunked.buffer).equals(Buffer.from(whole.buffer))).toBe(true);
    },
  );

  it.each([
    { inRate: 16000 as const, outRate: 24000 as const },
    { inRate: 24000 as const, outRate: 16000 as const },
  ])(
    "$inRate → $outRate: one-sample and odd frames give the same samples and exact totals",
    ({ inRate, outRate }) => {
      const input = (inRate === 16000 ? speech16 : speech24).subarray(8000, 12001);
      const whole = stream(inRate, outRate, input, [input.length]);
      const delay = new Resampler({ inRate, outRate }).delaySamples;
      expect(whole.length).toBe(Math.ceil((input.length * outRate) / inRate) + delay);
      for (const sizes of [[1], [3], [7, 1, 161], [333]]) {
        const out = stream(inRate, outRate, input, sizes);
        expect(Buffer.from(out.buffer).equals(Buffer.from(whole.buffer)), `sizes ${sizes.join(",")}`).toBe(
          true,
        );
      }
    },
  );

  it("has no clicks at frame edges (a per-frame restart would)", () => {
    const amplitude = 12000;
    const hz = 440;
    const x = sine(16000, hz, amplitude, 16000);
    // Largest step a 440 Hz sine of this amplitude takes between two 24 kHz samples, plus rounding.
    const maxStep = 2 * amplitude * Math.sin((Math.PI * hz) / 24000) * 1.01 + 2;
    const sizes = [1, 160, 77, 320, 3, 999, 2];

    const r = new Resampler({ inRate: 16000, outRate: 24000 });
    let previous: number | undefined;
    let worstEdgeStep = 0;
    for (let at = 0, i = 0; at < x.length; i++) {
      const n = sizes[i % sizes.length]!;
      const y = r.process(x.subarray(at, at + n));
      at += n;
      if (y.length === 0) continue;
      if (previous !== undefined && at > 4000)
        worstEdgeStep = Math.max(worstEdgeStep, Math.abs(y[0]! - previous));
      previous = y[y.length - 1];
    }
    expect(worstEdgeStep).toBeGreaterThan(0);
    expect(worstEdgeStep).toBeLessThanOrEqual(maxStep);

    // The detector is not blind: a resampler that forgets its history at every frame clicks.
    let restartStep = 0;
    previous = undefined;
    for (let at = 0, i = 0; at < x.length; i++) {
      const n = sizes[i % sizes.length]!;
      const fresh = new Resampler({ inRate: 16000, outRate: 24000 });
      const y = concat([fresh.process(x.subarray(at, at + n)).slice(), fresh.flush().slice()]);
      at += n;
      if (previous !== undefined && at > 4000)
        restartStep = Math.max(restartStep, Math.abs(y[0]! - previous));
      previous = y[y.length - 1];
    }
    expect(restartStep).toBeGreaterThan(maxStep);
  });

  it("reuses its output buffer: no allocation per frame once the frame size is known", () => {
    const r = new Resampler({ inRate: 16000, outRate: 24000 });
    const first = r.process(speech16.subarray(0, 320));
    const second = r.process(speech16.subarray(320, 640));
    expect(second).toBe(first);
    expect(second.length).toBe(480);
    const smaller = r.process(speech16.subarray(640, 800));
    expect(smaller.buffer).toBe(first.buffer);
    // A larger frame grows the buffer once; then it is stable again.
    const big = r.process(speech16.subarray(800, 800 + 8000));
    const again = r.process(speech16.subarray(8800, 8800 + 8000));
    expect(big.buffer).not.toBe(first.buffer);
    expect(again.buffer).toBe(big.buffer);
  });

  it.each([
    ["flush ends the stream", (r: Resampler) => void r.flush()],
    // Its memory coming back is the 10 000-cycle test below; twice is the same as once.
    ["dispose, twice, ends the stream", (r: Resampler) => (r.dispose(), r.dispose())],
  ])("%s, and the next stream starts clean, as on a fresh resampler", (_, end) => {
    const input = speech16.subarray(0, 5000);
    const expected = stream(16000, 24000, input, [320]);
    const r = new Resampler({ inRate: 16000, outRate: 24000 });
    r.process(speech16.subarray(20000, 23333));
    end(r);
    for (const sizes of [[input.length], [320]]) {
      const again = stream(16000, 24000, input, sizes, r);
      expect(Buffer.from(again.buffer).equals(Buffer.from(expected.buffer)), String(sizes)).toBe(true);
    }
  });

  it("saturates instead of wrapping around at full scale", () => {
    const square = new Int16Array(4000);
    for (let i = 0; i < square.length; i++) square[i] = Math.floor(i / 40) % 2 === 0 ? 32767 : -32768;
    const y = stream(16000, 24000, square, [320]);
    let max = -Infinity;
    let min = Infinity;
    for (const v of y) {
      max = Math.max(max, v);
      min = Math.min(min, v);
    }
    // Gibbs overshoot of a full-scale square clips at the rails; a wrap would show as a sign flip mid-plateau.
    expect(max).toBe(32767);
    expect(min).toBe(-32768);
    for (let i = 48 + 30; i < 48 + 50; i++) expect(y[i]!).toBeGreaterThan(30000);
  });

  it("passes through when the rates match, and rejects other rates", () => {
    const r = new Resampler({ inRate: 24000, outRate: 24000 });
    const frame = speech24.subarray(0, 480);
    expect(r.process(frame)).toBe(frame);
    expect(r.flush().length).toBe(0);
    expect(() => new Resampler({ inRate: 44100 as PcmRate, outRate: 24000 })).toThrow(RangeError);
    expect(() => new Resampler({ inRate: 16000, outRate: 8000 as PcmRate })).toThrow(RangeError);
  });
});

describe("Resampler WebAssembly kernel", () => {
  it("is the committed assembly of src/audio/resampler.wat", async () => {
    const assembled = Buffer.from(await assemble(RESAMPLER_KERNEL));
    expect(assembled.toString("base64")).toBe(RESAMPLER_KERNEL_BASE64);
  });

  // The kernel against plain scalar loops over the same table, the whole stream at once: 16→24 kHz in
  // single precision (Math.fround after every multiply and add, the order the kernel adds in),
  // 24→16 kHz in double. Streamed in 20 ms frames, then flushed, the samples are the same.
  it.each([
    ["living_room_16k.wav", 16000, 24000, "f32"],
    ["kitchen_light_16k.wav", 16000, 24000, "f32"],
    ["sweep_16k.wav", 16000, 24000, "f32"],
    ["yes_16k.wav", 16000, 24000, "f32"],
    ["living_room_24k_sox_vhq.wav", 24000, 16000, "f64"],
    ["kitchen_light_24k_sox_vhq.wav", 24000, 16000, "f64"],
    ["sweep_24k_sox_vhq.wav", 24000, 16000, "f64"],
  ] as const)("%s %i → %i: bit-identical to the scalar loops in %s", (name, inRate, outRate, precision) => {
    const x = fixture(name).samples;
    const out = stream(inRate, outRate, x, [inRate / 50]);
    expect(
      Buffer.from(out.buffer).equals(Buffer.from(scalarResample(x, inRate, outRate, precision).buffer)),
    ).toBe(true);
  });

  // The 24→16 kHz samples are still those of the JavaScript loops the kernel replaced (main at
  // 303d58f); 16→24 kHz moved to single precision and is checked against double below.
  it.each([
    ["living_room_24k_sox_vhq.wav", "c1e83e70859d358c37b7149509d312038e3cf68ab044dac50a99cb722124a56a"],
    ["kitchen_light_24k_sox_vhq.wav", "57cc97950ccb0cf592288f2929f30c25ca6376265142e88aa9c32da502fc32d3"],
    ["sweep_24k_sox_vhq.wav", "505bedbf6fa8fe615d4731298950a22ab9a99ee7ef683d7574c4b9c3dcd7cd73"],
  ] as const)("%s 24000 → 16000: the samples of the scalar loops it replaced (SHA-256)", (name, digest) => {
    const out = stream(24000, 16000, fixture(name).samples, [480]);
    expect(createHash("sha256").update(new Uint8Array(out.buffer)).digest("hex")).toBe(digest);
  });

  it.each(["living_room_16k.wav", "kitchen_light_16k.wav", "sweep_16k.wav", "yes_16k.wav"])(
    "%s 16000 → 24000: single precision is at most one step from double, in under 1 % of samples",
    (name) => {
      const x = fixture(name).samples;
      const single = stream(16000, 24000, x, [320]);
      const double = scalarResample(x, 16000, 24000, "f64");
      expect(single.length).toBe(double.length);
      let differ = 0;
      for (let i = 0; i < single.length; i++) {
        const d = Math.abs(single[i]! - double[i]!);
        expect(d).toBeLessThanOrEqual(1);
        differ += d;
      }
      expect(differ).toBeGreaterThan(0); // the precisions do differ: the check can tell them apart
      expect(differ / single.length).toBeLessThan(0.01);
    },
  );

  it("keeps streams apart: resamplers of both directions interleaved give what each gives alone", () => {
    const speech16 = fixture("living_room_16k.wav").samples;
    const sweep16 = fixture("sweep_16k.wav").samples;
    const speech24 = fixture("living_room_24k_sox_vhq.wav").samples;
    const alone = [
      stream(16000, 24000, speech16, [320]),
      stream(16000, 24000, sweep16, [333]),
      stream(24000, 16000, speech24, [480]),
    ];
    const inputs = [speech16, sweep16, speech24];
    const sizes = [320, 333, 480];
    const rs = [
      new Resampler({ inRate: 16000, outRate: 24000 }),
      new Resampler({ inRate: 16000, outRate: 24000 }),
      new Resampler({ inRate: 24000, outRate: 16000 }),
    ];
    const parts: Int16Array[][] = [[], [], []];
    for (let i = 0; inputs.some((x, s) => i * sizes[s]! < x.length); i++)
      rs.forEach((r, s) => {
        const at = i * sizes[s]!;
        if (at < inputs[s]!.length)
          parts[s]!.push(r.process(inputs[s]!.subarray(at, at + sizes[s]!)).slice());
      });
    rs.forEach((r, s) => parts[s]!.push(r.flush().slice()));
    parts.forEach((p, s) =>
      expect(Buffer.from(concat(p).buffer).equals(Buffer.from(alone[s]!.buffer))).toBe(true),
    );
  });
});

describe("Resampler memory", () => {
  const speech16 = fixture("living_room_16k.wav").samples;
  const speech24 = fixture("living_room_24k_sox_vhq.wav").samples;

  it("gives its memory back on dispose: 10 000 create/use/dispose cycles do not grow it", () => {
    const use = (): void => {
      const up = new Resampler({ inRate: 16000, outRate: 24000 });
      const down = new Resampler({ inRate: 24000, outRate: 16000 });
      up.process(speech16.subarray(0, 320));
      down.process(speech24.subarray(0, 480));
      up.dispose();
      down.dispose();
    };
    for (let i = 0; i < 10; i++) use();
    const before = resamplerMemoryBytes();
    expect(before).toBeGreaterThan(0);
    for (let i = 0; i < 10_000; i++) use();
    expect(resamplerMemoryBytes()).toBe(before);
  });

  it("gets the memory of resamplers dropped without dispose back once they are collected", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const frame = speech16.subarray(0, 320);
    const start = resamplerMemoryBytes();
    // 40 rounds of 500 dropped streams: 20 000 regions (≈ 140 MB) if none came back.
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 500; i++) new Resampler({ inRate: 16000, outRate: 24000 }).process(frame);
      gc();
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(resamplerMemoryBytes() - start).toBeLessThan(32 * 2 ** 20);
  });

  it("keeps every stream's samples while the memory grows under it (views re-taken)", () => {
    const expected = stream(16000, 24000, speech16, [320]);
    const r = new Resampler({ inRate: 16000, outRate: 24000 });
    const parts: Int16Array[] = [];
    const others: Resampler[] = [];
    const start = resamplerMemoryBytes();
    for (let at = 0; at < speech16.length; at += 320) {
      parts.push(r.process(speech16.subarray(at, at + 320)).slice());
      // Forty more streams open per frame: the memory grows several times mid-stream.
      for (let i = 0; i < 40; i++) {
        const other = new Resampler({ inRate: 24000, outRate: 16000 });
        other.process(speech24.subarray(at, at + 480));
        others.push(other);
      }
    }
    parts.push(r.flush().slice());
    expect(resamplerMemoryBytes()).toBeGreaterThan(start);
    expect(Buffer.from(concat(parts).buffer).equals(Buffer.from(expected.buffer))).toBe(true);
    for (const other of others) other.dispose();
  });

  it("processPcm gives the samples process gives, from bytes at any offset", () => {
    const input = speech16.subarray(0, 16000);
    const expected = stream(16000, 24000, input, [320]);
    const bytes = Buffer.alloc(input.byteLength + 1);
    Buffer.from(input.buffer, input.byteOffset, input.byteLength).copy(bytes, 1);
    const r = new Resampler({ inRate: 16000, outRate: 24000 });
    const parts: Int16Array[] = [];
    for (let at = 1; at < bytes.length; at += 640)
      parts.push(r.processPcm(bytes.subarray(at, at + 640)).slice());
    parts.push(r.flush().slice());
    expect(Buffer.from(concat(parts).buffer).equals(Buffer.from(expected.buffer))).toBe(true);
  });
});
