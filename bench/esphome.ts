/**
 * ESPHome benchmark: the whole service (device manager, turn, reply stream over HTTP) with an emulated
 * Voice PE on loopback and the fake Realtime server, whose model takes a fixed 250 ms to answer and
 * streams its audio 4× faster than real time; the device's paused decoder is the current firmware's
 * (`audio_decoder.cpp`: an MP3 decoder holds its first fill and one frame). Per reply format (MP3 at the
 * speech bitrate, WAV):
 * - end of speech (the upstream VAD's `speech_stopped`) → the first sound by the device's start rule,
 *   against end of speech → the upstream's first audio delta, in the same turn;
 * - what the product adds beyond the start rule: first sound − the moment the upstream had sent as much
 *   audio as the device had received at its first sound (the emulator's `sound` event). Target ≤ 50 ms.
 *
 * Runs alone: `npx tsx bench/esphome.ts` (BENCH_QUICK=1 for a smoke run).
 */
import { pathToFileURL } from "node:url";
import type { RealtimeServerEvent } from "openai/resources/realtime/realtime";
import { MP3_ENCODER_DELAY_SAMPLES, MP3_SPEECH_BITRATE_KBPS } from "../src/audio/mp3.js";
import type { ReplyFormat } from "../src/esphome/reply-stream.js";
import { fixturePcm, startHarness } from "../test/esphome-helpers.js";
import { tone, type FakeConnection } from "../test/fake-realtime/server.js";
import { median, percentile, type BenchContext, type BenchRow } from "./types.js";

const GROUP = "esphome";
const REPLY_DELAY_MS = 250;
const AUDIO_SPEED = 4;

interface Sent {
  readonly t: number;
  readonly e: RealtimeServerEvent;
}

interface FormatTimings {
  firstSound: number[];
  firstDelta: number[];
  added: number[];
  /** Audio (ms) the device had received at its first sound: what its start rule needed. */
  needed: number[];
  /** Of that, what its paused decoder had taken out of the count (ms). */
  held: number[];
}

/** Milliseconds of 24 kHz reply audio in `bytes` of the stream as served. */
function streamMs(format: ReplyFormat, bytes: number): number {
  if (format === "wav") return Math.max(0, bytes - 44) / 48;
  return Math.max(0, (bytes * 8) / MP3_SPEECH_BITRATE_KBPS - (MP3_ENCODER_DELAY_SAMPLES / 24_000) * 1000);
}

async function measure(format: ReplyFormat, turns: number): Promise<FormatTimings> {
  const h = await startHarness({
    entries: [{ take_over: true }],
    esphome: { reply_format: format },
    fake: { replyDelayMs: REPLY_DELAY_MS, audioSpeed: AUDIO_SPEED, replyAudio: tone(2500) },
  });
  const sent: Sent[] = [];
  const hook = (conn: FakeConnection): void => {
    const send = conn.send.bind(conn);
    conn.send = (e) => {
      sent.push({ t: performance.now(), e });
      send(e);
    };
  };
  h.fake.connections.forEach(hook);
  h.fake.on("connection", hook);
  const out: FormatTimings = { firstSound: [], firstDelta: [], added: [], needed: [], held: [] };
  try {
    const dev = h.devices[0]!;
    let receivedAtSound = NaN;
    let heldAtSound = NaN;
    dev.mediaPlayer.on("sound", (s) => {
      receivedAtSound = s.receivedBytes;
      heldAtSound = s.heldByDecoder;
    });
    await h.waitDevice(dev.name, (d) => d.owner === "openvoice");
    const speech = await fixturePcm("kitchen_light_16k.wav");
    for (let i = 0; i < turns; i++) {
      sent.length = 0;
      receivedAtSound = NaN;
      heldAtSound = NaN;
      const run = await dev.wake(speech);
      const need = streamMs(format, receivedAtSound);
      if (run.error || run.firstSoundAt === null) throw new Error(`run failed: ${JSON.stringify(run.error)}`);
      // End of speech as the upstream's VAD decides it (what every route waits for alike).
      const speechEndAt = sent.find((x) => x.e.type === "input_audio_buffer.speech_stopped")?.t ?? NaN;
      const deltas = sent.filter((s) => s.t >= speechEndAt && s.e.type === "response.output_audio.delta");
      const first = deltas[0];
      if (!first) throw new Error("no audio delta");
      // When the upstream had sent what the device's start rule needs.
      let ms = 0;
      let ready = NaN;
      for (const d of deltas) {
        ms += Buffer.from((d.e as { delta: string }).delta, "base64").length / 48;
        if (ms >= need) {
          ready = d.t;
          break;
        }
      }
      out.firstSound.push(run.firstSoundAt - speechEndAt);
      out.firstDelta.push(first.t - speechEndAt);
      out.added.push(run.firstSoundAt - ready);
      out.needed.push(need);
      out.held.push(format === "wav" ? heldAtSound / 48 : (heldAtSound * 8) / MP3_SPEECH_BITRATE_KBPS);
    }
  } finally {
    await h.close();
  }
  return out;
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const turns = ctx.quick ? 3 : 10;
  const rows: BenchRow[] = [];
  for (const format of ["mp3", "wav"] as const) {
    const t = await measure(format, turns);
    const sound = median(t.firstSound);
    const delta = median(t.firstDelta);
    const added = median(t.added);
    rows.push({
      group: GROUP,
      name: `end of speech → first sound, ${format.toUpperCase()} (${turns} turns)`,
      unit: "ms",
      ours: sound,
      baseline: delta,
      baselineName: `upstream's first audio delta (${REPLY_DELAY_MS} ms model delay)`,
      ratio: sound / delta,
      note: `the device's start rule needed ${Math.round(median(t.needed))} ms of audio first (its paused decoder held ${Math.round(median(t.held))} ms of it); p90 ${percentile(t.firstSound, 90).toFixed(0)} ms`,
    });
    rows.push({
      group: GROUP,
      name: `added beyond the start rule, ${format.toUpperCase()} (${turns} turns)`,
      unit: "ms",
      ours: added,
      baseline: null,
      baselineName: "",
      ratio: null,
      target: "≤ 50 ms median",
      met: added <= 50,
      note: `first sound − when the upstream had sent the ${Math.round(median(t.needed))} ms of audio the device had then (${AUDIO_SPEED}× real time); p90 ${percentile(t.added, 90).toFixed(1)} ms`,
    });
  }
  return rows;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await run({ quick: process.env.BENCH_QUICK === "1" });
  for (const r of rows)
    console.log(
      `${r.name}: ${r.ours.toFixed(1)} ${r.unit} | ${r.baseline?.toFixed(1) ?? "–"} ${r.baselineName} | ${r.note}`,
    );
}
