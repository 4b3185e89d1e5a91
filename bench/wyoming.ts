/**
 * Wyoming benchmark: Home Assistant's three calls (speech-to-text legacy style, conversation, text-to-
 * speech) through the Wyoming server and the programs to the fake Realtime server on loopback, whose
 * model takes a fixed 250 ms to answer and 100 ms to transcribe. Each stage is timed at the Wyoming
 * client against a baseline from the same turn, timed at the fake upstream:
 * - `audio-stop` → `transcript` vs `audio-stop` → the upstream's transcription `.completed`;
 * - `transcript` (handle) → `handled` vs the same start → the upstream's last `response.done`;
 * - `synthesize` of the handled answer → first `audio-chunk` vs `synthesize` of other text (spoken by
 *   the model out of band) → first `audio-chunk`.
 *
 * Runs alone: `npx tsx bench/wyoming.ts` (BENCH_QUICK=1 for a smoke run).
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { RealtimeServerEvent } from "openai/resources/realtime/realtime";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { pcm16Bytes } from "../src/audio/pcm.js";
import { parseWav } from "../src/audio/wav.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { createAssistPrograms } from "../src/wyoming/programs.js";
import { WyomingServer } from "../src/wyoming/server.js";
import { startFakeRealtime } from "../test/fake-realtime/server.js";
import { RecordingTools, freshMetrics, makeConfig, silentLogger } from "../test/fake-realtime/helpers.js";
import { WyomingTestClient, chunkPcm } from "../test/wyoming-client.js";
import { median, percentile, type BenchContext, type BenchRow } from "./types.js";

const GROUP = "wyoming";
const REPLY_DELAY_MS = 250;
const TRANSCRIBE_MS = 100;
const PCM16_16K = { rate: 16000, width: 2, channels: 1 };

const SPEECH = Buffer.from(
  pcm16Bytes(
    parseWav(readFileSync(new URL("../test/fixtures/audio/kitchen_light_16k.wav", import.meta.url))).samples,
  ),
);

interface Sent {
  readonly t: number;
  readonly e: RealtimeServerEvent;
}

interface Timings {
  transcript: number[];
  transcriptBase: number[];
  handled: number[];
  handledBase: number[];
  firstAudio: number[];
  firstAudioBase: number[];
}

/** Writes `events`, then reads until one of `until`; resolves with the read time of each type seen first. */
async function call(
  port: number,
  write: (c: WyomingTestClient) => Promise<number>,
  until: readonly string[],
  firstOf: string,
): Promise<{ start: number; at: number }> {
  const c = await WyomingTestClient.connect(port);
  try {
    const start = await write(c);
    let at = NaN;
    for (;;) {
      const e = await c.read(30_000);
      if (e === null) throw new Error("connection lost");
      if (e.type === "error") throw new Error(`error: ${String(e.data.text)}`);
      if (e.type === firstOf && Number.isNaN(at)) at = performance.now();
      if (until.includes(e.type)) break;
    }
    return { start, at };
  } finally {
    await c.close();
  }
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const iterations = ctx.quick ? 5 : 20;
  const fake = await startFakeRealtime({
    audioSpeed: 20,
    replyDelayMs: REPLY_DELAY_MS,
    transcription: { delayMs: TRANSCRIBE_MS },
    replyTranscript: "The kitchen light is on.",
  });
  const sent: Sent[] = [];
  fake.on("connection", (conn) => {
    const send = conn.send.bind(conn);
    conn.send = (e) => {
      sent.push({ t: performance.now(), e });
      send(e);
    };
  });
  const config = makeConfig(
    fake.url,
    { listen: { host: "127.0.0.1" }, wyoming: { port: 0 } },
    { pool_size: 2 },
  );
  const approvals = new ApprovalQueue({ timeoutS: 30 });
  const engine = new RealtimeEngine({
    config,
    tools: new RecordingTools(),
    approvals,
    logger: silentLogger(),
    metrics: freshMetrics(),
  });
  const assist = createAssistPrograms({ engine, config, approvals, logger: silentLogger() });
  const server = new WyomingServer({
    config,
    version: "bench",
    logger: silentLogger(),
    programs: assist.programs,
  });
  const t: Timings = {
    transcript: [],
    transcriptBase: [],
    handled: [],
    handledBase: [],
    firstAudio: [],
    firstAudioBase: [],
  };
  const firstSent = (type: string, after: number, pred: (e: RealtimeServerEvent) => boolean = () => true) =>
    sent.find((s) => s.t >= after && s.e.type === type && pred(s.e))?.t ?? NaN;
  const lastSent = (type: string, after: number, before: number) =>
    sent.filter((s) => s.t >= after && s.t <= before && s.e.type === type).at(-1)?.t ?? NaN;
  try {
    await engine.warmUp();
    await assist.warmUp();
    const port = await server.listen();
    for (let i = 0; i < iterations; i++) {
      sent.length = 0;
      // Speech to text, as Home Assistant did until mid-2025: everything, audio-stop, then read.
      const stt = await call(
        port,
        async (c) => {
          await c.write("transcribe", { language: "en" });
          await c.write("audio-start", PCM16_16K);
          for (const chunk of chunkPcm(SPEECH)) await c.write("audio-chunk", PCM16_16K, chunk);
          const stop = performance.now();
          await c.write("audio-stop");
          return stop;
        },
        ["transcript"],
        "transcript",
      );
      const text = "turn on the kitchen light";
      t.transcript.push(stt.at - stt.start);
      t.transcriptBase.push(
        firstSent("conversation.item.input_audio_transcription.completed", stt.start) - stt.start,
      );

      const handle = await call(
        port,
        async (c) => {
          const start = performance.now();
          await c.write("transcript", { text, language: "en", context: { conversation_id: "01HBENCH" } });
          return start;
        },
        ["handled"],
        "handled",
      );
      t.handled.push(handle.at - handle.start);
      t.handledBase.push(lastSent("response.done", handle.start, handle.at) - handle.start);

      const speak = async (words: string) =>
        call(
          port,
          async (c) => {
            const start = performance.now();
            await c.write("synthesize", { text: words });
            return start;
          },
          ["audio-stop"],
          "audio-chunk",
        );
      const matched = await speak("The kitchen light is on.");
      t.firstAudio.push(matched.at - matched.start);
      const other = await speak(`Timer ${i + 1} is done.`);
      t.firstAudioBase.push(other.at - other.start);
    }
  } finally {
    await server.close();
    await assist.close();
    await engine.close();
    await fake.close();
  }
  const row = (
    name: string,
    ours: number[],
    base: number[],
    baselineName: string,
    extra: Partial<BenchRow> = {},
  ): BenchRow => {
    const o = median(ours);
    const b = median(base);
    return {
      group: GROUP,
      name: `${name} (${iterations} turns)`,
      unit: "ms",
      ours: o,
      baseline: b,
      baselineName,
      ratio: o / b,
      note: `lower is better; overhead ${(o - b).toFixed(1)} ms; p90 ${percentile(ours, 90).toFixed(1)} ms`,
      ...extra,
    };
  };
  return [
    row(
      "end of speech (audio-stop) → transcript",
      t.transcript,
      t.transcriptBase,
      `upstream transcription .completed (${TRANSCRIBE_MS} ms)`,
    ),
    row(
      "handle → handled",
      t.handled,
      t.handledBase,
      `upstream response.done (${REPLY_DELAY_MS} ms model delay)`,
    ),
    row(
      "synthesize (handled answer) → first audio-chunk",
      t.firstAudio,
      t.firstAudioBase,
      `other text, spoken out of band (${REPLY_DELAY_MS} ms model delay)`,
      { target: "≤ 20 ms median", met: median(t.firstAudio) <= 20 },
    ),
  ];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await run({ quick: process.env.BENCH_QUICK === "1" });
  for (const r of rows)
    console.log(
      `${r.name}: ${r.ours.toFixed(2)} ${r.unit} | ${r.baseline?.toFixed(1)} (${r.baselineName}) | ×${r.ratio?.toFixed(3)} | ${r.note}`,
    );
}
