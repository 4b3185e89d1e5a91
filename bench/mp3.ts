/**
 * MP3 reply encoding (ESPHome route): the CPU time LAME (WebAssembly) needs per second of speech, as the
 * reply stream feeds it — 24 kHz mono PCM16 in 40 ms chunks, at the speech bitrate — and the first-use load time.
 *
 * CPU time is the process's user + system time around the encoding (`process.cpuUsage`), median over runs
 * of a 30 s signal built from the speech fixtures; the baseline is real time (1000 ms of CPU per second of
 * audio would be one core fully busy), so the ratio is the share of one core the encoder takes.
 *
 * Runs alone: `npx tsx bench/mp3.ts` (BENCH_QUICK=1 for a smoke run).
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { MP3_SPEECH_BITRATE_KBPS, Mp3StreamEncoder } from "../src/audio/mp3.js";
import { parseWav } from "../src/audio/wav.js";
import { loopSamples, median, type BenchContext, type BenchRow } from "./types.js";

const FIXTURES = new URL("../test/fixtures/audio/", import.meta.url);
const RATE = 24_000;
const CHUNK_MS = 40;
const SIGNAL_SECONDS = 30;
const GROUP = "esphome";

function speech(seconds: number): Buffer {
  const parts = ["living_room_24k_sox_vhq.wav", "kitchen_light_24k_sox_vhq.wav"].map(
    (n) => parseWav(readFileSync(new URL(n, FIXTURES))).samples,
  );
  return Buffer.from(loopSamples(parts, RATE * seconds).buffer);
}

/** CPU ms (user + system) to encode `pcm` in chunks, start to flush. */
async function encodeCpuMs(pcm: Buffer): Promise<{ cpuMs: number; bytes: number }> {
  const enc = new Mp3StreamEncoder({ sampleRate: RATE, bitrateKbps: MP3_SPEECH_BITRATE_KBPS });
  await enc.ready;
  const chunk = (RATE * 2 * CHUNK_MS) / 1000;
  let bytes = 0;
  const before = process.cpuUsage();
  for (let i = 0; i < pcm.length; i += chunk) bytes += enc.encode(pcm.subarray(i, i + chunk)).length;
  bytes += enc.flush().length;
  const used = process.cpuUsage(before);
  return { cpuMs: (used.user + used.system) / 1000, bytes };
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const t0 = performance.now();
  await Mp3StreamEncoder.load();
  const loadMs = performance.now() - t0;

  const seconds = ctx.quick ? 5 : SIGNAL_SECONDS;
  const pcm = speech(seconds);
  await encodeCpuMs(pcm.subarray(0, RATE * 2)); // warm-up
  const runs: number[] = [];
  let bytes = 0;
  for (let i = 0; i < (ctx.quick ? 2 : 7); i++) {
    const r = await encodeCpuMs(pcm);
    runs.push(r.cpuMs / seconds);
    bytes = r.bytes;
  }
  const perSecond = median(runs);
  return [
    {
      group: GROUP,
      name: `MP3 encoder CPU per second of speech (LAME wasm, 24 kHz mono, ${MP3_SPEECH_BITRATE_KBPS} kbit/s, ${CHUNK_MS} ms chunks)`,
      unit: "ms",
      ours: perSecond,
      baseline: 1000,
      baselineName: "real time",
      ratio: perSecond / 1000,
      note: `share of one core while a reply streams; ${(bytes / seconds / 1000).toFixed(1)} kB/s out; not measured on a Raspberry Pi`,
    },
    {
      group: GROUP,
      name: "MP3 encoder first load (compile the WebAssembly, once per process)",
      unit: "ms",
      ours: loadMs,
      baseline: null,
      baselineName: "",
      ratio: null,
      note: "on the first reply stream or ReplyStreams.prepare(), never at start-up",
    },
  ];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await run({ quick: process.env.BENCH_QUICK === "1" });
  for (const r of rows)
    console.log(
      `${r.name}: ${r.ours.toFixed(2)} ${r.unit}${r.ratio === null ? "" : ` (×${r.ratio.toPrecision(3)} ${r.baselineName})`}`,
    );
}
