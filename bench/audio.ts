/**
 * Resampler benchmark: speed in × real time and SNR against sox's very-high-quality resampler,
 * ours beside libsamplerate (WASM build, SRC_SINC_FASTEST) in the same run.
 *
 * Speed: a 60 s signal built from the speech and sweep fixtures is streamed in 20 ms frames through
 * one resampler, as the satellite bridge does; the median over repetitions is reported. The baseline
 * is measured twice: doing the same PCM16 → PCM16 job (with the Int16 ⇄ Float32 conversions it needs),
 * and on Float32 data with the conversions left out (its best case; the target is judged against it).
 *
 * Runs alone: `npx tsx bench/audio.ts` (BENCH_QUICK=1 for a smoke run).
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import libsamplerate from "@alexanderolsen/libsamplerate-js";
import { Resampler, type PcmRate } from "../src/audio/resampler.js";
import { parseWav } from "../src/audio/wav.js";
import { loopSamples, median, type BenchContext, type BenchRow } from "./types.js";

const FIXTURES = new URL("../test/fixtures/audio/", import.meta.url);
const SIGNAL_SECONDS = 60;
const FRAME_MS = 20;
const GROUP = "audio";
const BASELINE = "libsamplerate-js SINC_FASTEST";

type Direction = { inRate: PcmRate; outRate: PcmRate; label: string };
const DIRECTIONS: readonly Direction[] = [
  { inRate: 16000, outRate: 24000, label: "16→24 kHz" },
  { inRate: 24000, outRate: 16000, label: "24→16 kHz" },
];

/** SNR cases: input fixture, sox VHQ reference. */
const SNR_CASES: Record<string, readonly { name: string; input: string; reference: string }[]> = {
  "16→24 kHz": [
    { name: "living_room", input: "living_room_16k.wav", reference: "living_room_24k_sox_vhq.wav" },
    { name: "kitchen_light", input: "kitchen_light_16k.wav", reference: "kitchen_light_24k_sox_vhq.wav" },
    { name: "sweep", input: "sweep_16k.wav", reference: "sweep_24k_sox_vhq.wav" },
  ],
  "24→16 kHz": [
    {
      name: "living_room",
      input: "living_room_24k_sox_vhq.wav",
      reference: "living_room_24k_to_16k_sox_vhq.wav",
    },
  ],
};

type Lsr = Awaited<ReturnType<typeof libsamplerate.create>>;

function fixture(name: string): Int16Array {
  return parseWav(readFileSync(new URL(name, FIXTURES))).samples;
}

/** The fixtures at `rate`, repeated back to back up to `seconds`. */
function longSignal(rate: PcmRate, seconds: number): Int16Array {
  const names =
    rate === 16000
      ? ["living_room_16k.wav", "kitchen_light_16k.wav", "sweep_16k.wav", "yes_16k.wav"]
      : ["living_room_24k_sox_vhq.wav", "kitchen_light_24k_sox_vhq.wav", "sweep_24k_sox_vhq.wav"];
  return loopSamples(names.map(fixture), rate * seconds);
}

function toFloat(pcm: Int16Array): Float32Array {
  const f = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) f[i] = pcm[i]! / 32768;
  return f;
}

function toPcm(f: Float32Array, n = f.length): Int16Array {
  const pcm = new Int16Array(n);
  for (let i = 0; i < n; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(f[i]! * 32768)));
  return pcm;
}

/** Best SNR (dB) of `out` against `ref` over integer lags in [0, maxLag]. */
function alignedSnr(ref: Int16Array, out: Int16Array, maxLag: number): { snr: number; lag: number } {
  let best = { snr: -Infinity, lag: 0 };
  for (let lag = 0; lag <= maxLag; lag++) {
    let signal = 0;
    let error = 0;
    for (let i = 0; i < ref.length; i++) {
      const r = ref[i]!;
      const e = r - (out[i + lag] ?? 0);
      signal += r * r;
      error += e * e;
    }
    const snr = 10 * Math.log10(signal / error);
    if (snr > best.snr) best = { snr, lag };
  }
  return best;
}

function timeOurs(dir: Direction, signal: Int16Array): number {
  const r = new Resampler(dir);
  const frame = (dir.inRate * FRAME_MS) / 1000;
  let sink = 0;
  const t0 = performance.now();
  for (let i = 0; i < signal.length; i += frame) sink += r.process(signal.subarray(i, i + frame)).length;
  sink += r.flush().length;
  const ms = performance.now() - t0;
  if (sink === 0) throw new Error("resampler produced nothing");
  return ms;
}

/** libsamplerate's streaming (`full`) API in 20 ms frames; `pcm` includes the Int16 ⇄ Float32 conversions. */
function timeLsr(
  src: Lsr,
  dir: Direction,
  signal: Int16Array,
  floatSignal: Float32Array,
  pcm: boolean,
): number {
  const frame = (dir.inRate * FRAME_MS) / 1000;
  const outMax = Math.ceil((frame * dir.outRate) / dir.inRate) + 64;
  const inBuf = new Float32Array(frame);
  const outBuf = new Float32Array(outMax);
  const pcmOut = new Int16Array(outMax);
  const written = { frames: 0 };
  let sink = 0;
  const t0 = performance.now();
  for (let i = 0; i < signal.length; i += frame) {
    if (pcm) {
      for (let j = 0; j < frame; j++) inBuf[j] = signal[i + j]! / 32768;
      src.full(inBuf, outBuf, written);
      for (let j = 0; j < written.frames; j++) {
        const v = Math.round(outBuf[j]! * 32768);
        pcmOut[j] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      }
    } else {
      src.full(floatSignal.subarray(i, i + frame), outBuf, written);
    }
    sink += written.frames;
  }
  const ms = performance.now() - t0;
  if (sink === 0) throw new Error("libsamplerate produced nothing");
  return ms;
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const reps = ctx.quick ? 3 : 15;
  const rows: BenchRow[] = [];
  for (const dir of DIRECTIONS) {
    const options = { converterType: libsamplerate.ConverterType.SRC_SINC_FASTEST };
    // One instance for whole-buffer quality runs, another for streaming: `simple` ends its stream.
    const whole = await libsamplerate.create(1, dir.inRate, dir.outRate, options);
    const src = await libsamplerate.create(1, dir.inRate, dir.outRate, options);
    try {
      // Quality first: both resamplers against the sox VHQ references.
      const snrRows: BenchRow[] = [];
      let qualityMet = true;
      for (const c of SNR_CASES[dir.label] ?? []) {
        const input = fixture(c.input);
        const reference = fixture(c.reference);
        const ours = new Resampler(dir);
        const head = ours.process(input).slice();
        const tail = ours.flush();
        const out = new Int16Array(head.length + tail.length);
        out.set(head);
        out.set(tail, head.length);
        const mine = alignedSnr(reference, out, 2 * ours.delaySamples);
        const theirs = alignedSnr(reference, toPcm(whole.simple(toFloat(input))), 64);
        qualityMet &&= mine.snr >= theirs.snr;
        snrRows.push({
          group: GROUP,
          name: `${dir.label} SNR vs sox VHQ (${c.name})`,
          unit: "dB",
          ours: mine.snr,
          baseline: theirs.snr,
          baselineName: BASELINE,
          ratio: null,
          target: "≥ 40 dB",
          met: mine.snr >= 40,
          note: `aligned at lag ${mine.lag} (ours) / ${theirs.lag} (baseline); Δ ${(mine.snr - theirs.snr).toFixed(1)} dB`,
        });
      }

      // Speed: interleave the contenders so drifting machine load hits both alike.
      const signal = longSignal(dir.inRate, SIGNAL_SECONDS);
      const floatSignal = toFloat(signal);
      timeOurs(dir, signal);
      timeLsr(src, dir, signal, floatSignal, true);
      const ours: number[] = [];
      const lsrPcm: number[] = [];
      const lsrFloat: number[] = [];
      for (let i = 0; i < reps; i++) {
        gc();
        ours.push((SIGNAL_SECONDS * 1000) / timeOurs(dir, signal));
        gc();
        lsrPcm.push((SIGNAL_SECONDS * 1000) / timeLsr(src, dir, signal, floatSignal, true));
        gc();
        lsrFloat.push((SIGNAL_SECONDS * 1000) / timeLsr(src, dir, signal, floatSignal, false));
      }
      const o = median(ours);
      const p = median(lsrPcm);
      const f = median(lsrFloat);
      rows.push(
        {
          group: GROUP,
          name: `${dir.label} resample speed (PCM16 in/out, 20 ms frames, ${SIGNAL_SECONDS} s signal)`,
          unit: "× real time",
          ours: o,
          baseline: p,
          baselineName: `${BASELINE}, with PCM16 conversions`,
          ratio: o / p,
          note: `higher is better; median of ${reps}`,
        },
        {
          group: GROUP,
          name: `${dir.label} resample speed vs float-only baseline`,
          unit: "× real time",
          ours: o,
          baseline: f,
          baselineName: `${BASELINE}, Float32 in/out, no conversions`,
          ratio: o / f,
          target: "faster than SINC_FASTEST at ≥ its SNR",
          met: o > f && qualityMet,
          note: `higher is better; median of ${reps}; ours still does the PCM16 work`,
        },
        ...snrRows,
      );
    } finally {
      whole.destroy();
      src.destroy();
    }
  }
  return rows;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await run({ quick: process.env.BENCH_QUICK === "1" });
  for (const r of rows) {
    const base = r.baseline === null ? "" : ` | ${r.baseline.toFixed(1)} (${r.baselineName})`;
    const ratio = r.ratio === null ? "" : ` | ×${r.ratio.toFixed(2)}`;
    const target = r.target ? ` | ${r.target} ${r.met ? "✔" : "✘"}` : "";
    console.log(
      `${r.name}: ${r.ours.toFixed(1)} ${r.unit}${base}${ratio}${target}${r.note ? ` | ${r.note}` : ""}`,
    );
  }
}
