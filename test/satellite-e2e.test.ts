/**
 * End to end on loopback: a real `ws` satellite → the satellite route and bridge → the real
 * RealtimeEngine → the fake Realtime server (GA events). Fixture audio from test/fixtures/audio.
 */
import { readFile } from "node:fs/promises";
import Fastify, { type FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { parseWav } from "../src/audio/wav.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { SatelliteAuth } from "../src/satellite/auth.js";
import { satelliteRoute } from "../src/satellite/route.js";
import {
  startFakeRealtime,
  tone,
  type FakeConnection,
  type FakeRealtimeOptions,
  type FakeRealtimeServer,
} from "./fake-realtime/server.js";
import { RecordingTools, freshMetrics, makeConfig, silentLogger } from "./fake-realtime/helpers.js";
import { SHARED_TOKEN, TestSatellite, sleep, tonePcm } from "./satellite-helpers.js";

const FIXTURES = new URL("./fixtures/audio/", import.meta.url);
const fixture = async (name: string): Promise<Int16Array> =>
  parseWav(await readFile(new URL(name, FIXTURES))).samples;

let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;
let app: FastifyInstance | undefined;
const sats: TestSatellite[] = [];

afterEach(async () => {
  for (const s of sats.splice(0)) s.close();
  await app?.close();
  await engine?.close();
  await fake?.close();
  app = engine = fake = undefined;
});

async function setup(fakeOpts: FakeRealtimeOptions = {}): Promise<{ url: string; fake: FakeRealtimeServer }> {
  fake = await startFakeRealtime(fakeOpts);
  const metrics = freshMetrics();
  const logger = silentLogger();
  const approvals = new ApprovalQueue({ timeoutS: 30 });
  engine = new RealtimeEngine({
    config: makeConfig(fake.url),
    tools: new RecordingTools(),
    approvals,
    logger,
    metrics,
  });
  app = Fastify();
  await app.register(satelliteRoute, {
    conversations: engine,
    approvals,
    auth: new SatelliteAuth({ token: SHARED_TOKEN }),
    logger,
    metrics,
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as { port: number };
  return { url: `ws://127.0.0.1:${port}/api/v1/satellite`, fake };
}

async function satellite(url: string, turn: "server_vad" | "client"): Promise<TestSatellite> {
  const s = await TestSatellite.connect(url);
  sats.push(s);
  await s.hello({ turn });
  return s;
}

/** Streams PCM16 16 kHz in 20 ms frames at real time (drift-corrected). */
async function streamRealTime(s: TestSatellite, samples: Int16Array): Promise<void> {
  const frame = 320;
  const start = performance.now();
  for (let i = 0, k = 0; i < samples.length; i += frame, k++) {
    const chunk = samples.subarray(i, i + frame);
    s.sendAudio(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    const wait = start + (k + 1) * 20 - performance.now();
    if (wait > 0) await sleep(wait);
  }
}

function appended(conn: FakeConnection): Buffer[] {
  return conn.received.flatMap((e) =>
    e.type === "input_audio_buffer.append" ? [Buffer.from(e.audio, "base64")] : [],
  );
}

function snrDb(signal: Int16Array, reference: Int16Array): number {
  let sig = 0;
  let noise = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i]!;
    const d = signal[i]! - r;
    sig += r * r;
    noise += d * d;
  }
  return 10 * Math.log10(sig / noise);
}

describe("satellite → engine → fake Realtime", () => {
  it("a fixture WAV streamed in real time arrives upstream as 24 kHz with the right length and content", async () => {
    const { url, fake } = await setup({ vad: { threshold: 2 } }); // no turns: only the audio path is exercised
    const s = await satellite(url, "server_vad");
    s.send({ type: "turn.start" });
    const conn = await fake.nextConnection();
    await s.waitJson("state", (m) => m.value === "listening");
    const speech = await fixture("living_room_16k.wav");
    const arrivals: number[] = [];
    conn.on("event", (e) => {
      if (e.type === "input_audio_buffer.append") arrivals.push(performance.now());
    });
    const t0 = performance.now();
    await streamRealTime(s, speech);
    const streamedMs = performance.now() - t0;
    const expectedBytes = speech.length * 1.5 * 2;
    await expect
      .poll(() => appended(conn).reduce((n, a) => n + a.length, 0), { timeout: 5000 })
      .toBeGreaterThanOrEqual(expectedBytes - 6);
    const up = Buffer.concat(appended(conn));
    expect(up.length).toBeLessThanOrEqual(expectedBytes);
    // Streamed, not batched: appends kept arriving over the whole real-time span.
    const durationMs = (speech.length / 16000) * 1000;
    expect(streamedMs).toBeGreaterThan(durationMs * 0.95);
    expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThan(durationMs * 0.8);
    // Content: our 24 kHz stream matches sox's very-high-quality resampling (aligned by our 48-sample delay).
    const ours = new Int16Array(up.buffer, up.byteOffset, up.length / 2);
    const sox = await fixture("living_room_24k_sox_vhq.wav");
    const n = Math.min(sox.length, ours.length - 48) - 100;
    expect(snrDb(ours.subarray(48, 48 + n), sox.subarray(0, n))).toBeGreaterThanOrEqual(40);
  });

  it("reply audio arrives at 16 kHz, paced at real time, between response.start and response.end", async () => {
    const { url } = await setup({
      replyAudio: tone(1500),
      audioSpeed: 8,
      replyTranscript: "The light is on.",
    });
    const s = await satellite(url, "client");
    s.send({ type: "turn.start" });
    await streamRealTime(s, (await fixture("kitchen_light_16k.wav")).subarray(0, 16000));
    s.send({ type: "turn.end" });
    const end = await s.waitJson("response.end", () => true, 10_000);
    expect(end.reason).toBe("done");
    const frames = s.audio();
    const bytes = frames.reduce((n, f) => n + f.binary!.length, 0);
    expect(bytes).toBe((24000 + 32) * 2); // 1.5 s at 16 kHz plus the resampler's tail
    expect(frames.slice(0, -1).every((f) => f.binary!.length === 640)).toBe(true);
    const span = frames.at(-1)!.at - frames[0]!.at;
    expect(span).toBeGreaterThan(1100); // 1500 ms minus the 200 ms lead, with margin
    expect(span).toBeLessThan(3500);
    const types = s.messages().map((m) => m.type);
    expect(types.indexOf("response.start")).toBeLessThan(types.indexOf("response.end"));
    expect(s.messages()).toContainEqual({
      type: "transcript",
      role: "assistant",
      text: "The light is on.",
      final: true,
    });
    expect(s.messages()).toContainEqual({ type: "state", value: "speaking" });
  });

  it("barge-in: speech during the reply → playback.clear and a truncate with a plausible audio_end_ms", async () => {
    const { url, fake } = await setup({
      replyAudio: tone(4000),
      audioSpeed: 8,
      vad: { speechMs: 60, silenceMs: 300 },
    });
    const s = await satellite(url, "server_vad");
    s.send({ type: "turn.start" });
    const conn = await fake.nextConnection();
    // Say something, then silence: the fake's VAD ends the turn and the reply starts.
    await streamRealTime(s, await fixture("yes_16k.wav"));
    const quiet = new Int16Array(320);
    const feedSilence = setInterval(() => s.sendAudio(Buffer.from(quiet.buffer)), 20);
    try {
      const first = await s.waitFor((f) => f.binary !== undefined, 10_000);
      await sleep(1000);
      clearInterval(feedSilence);
      const loud = tonePcm(300, 16000, 500, 0.5);
      const bargeAt = performance.now();
      await streamRealTime(s, new Int16Array(loud.buffer, loud.byteOffset, loud.length / 2));
      const clear = await s.waitFor((f) => f.json?.type === "playback.clear", 5000);
      expect(await s.waitJson("response.end", (m) => m.reason === "interrupted")).toBeTruthy();
      await expect
        .poll(() => conn.received.some((e) => e.type === "conversation.item.truncate"), { timeout: 3000 })
        .toBe(true);
      const truncate = conn.received.find((e) => e.type === "conversation.item.truncate");
      if (truncate?.type !== "conversation.item.truncate") throw new Error("no truncate");
      expect(truncate.content_index).toBe(0);
      const heard = clear.at - first.at;
      expect(truncate.audio_end_ms).toBeGreaterThan(Math.min(heard, bargeAt - first.at) - 300);
      expect(truncate.audio_end_ms).toBeLessThan(heard + 400);
      expect(truncate.audio_end_ms).toBeLessThan(4000);
      expect(truncate.item_id).toMatch(/^item_/);
      // No reply audio after the clear.
      await sleep(300);
      const iClear = s.frames.indexOf(clear);
      expect(s.frames.slice(iClear).filter((f) => f.binary)).toHaveLength(0);
    } finally {
      clearInterval(feedSilence);
    }
  });
});
