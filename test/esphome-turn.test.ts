/**
 * The voice run of an ESPHome device (VoiceHost + VoiceTurn) against the real engine and the fake
 * Realtime server, with the reply served by real ReplyStreams over HTTP on loopback. The device is a
 * recording stand-in that speaks fixture audio and fetches the reply when told to stream; the full
 * device (Noise, the firmware's state machine) is exercised by esphome-e2e.test.ts.
 */
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import Fastify, { type FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { parseWav } from "../src/audio/wav.js";
import {
  VoiceEvent,
  type DeviceConnectionEvents,
  type DeviceInfo,
  type VoiceRequest,
} from "../src/esphome/api/index.js";
import { ReplyStreams, type ReplyFormat } from "../src/esphome/reply-stream.js";
import { VoiceTurn } from "../src/esphome/turn.js";
import { VoiceHost } from "../src/esphome/voice-host.js";
import type { ConversationEvents, TurnEvents } from "../src/realtime/conversation.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import {
  startFakeRealtime,
  tone,
  type FakeRealtimeOptions,
  type FakeRealtimeServer,
} from "./fake-realtime/server.js";
import {
  RecordingTools,
  freshMetrics,
  makeConfig,
  metricValue,
  silentLogger,
} from "./fake-realtime/helpers.js";
import { FULL_RUN } from "./esphome-helpers.js";

const FIXTURES = new URL("./fixtures/audio/", import.meta.url);

interface SentEvent {
  type: number;
  data: Record<string, string>;
}

/** A device connection that records what it is sent and fetches the reply as a media player would. */
class RecordingDevice extends EventEmitter<DeviceConnectionEvents> {
  readonly info: DeviceInfo = {
    name: "voice-test",
    friendlyName: "Voice test",
    macAddress: "00:11:22:33:44:55",
    model: "test",
    esphomeVersion: "2025.10.0",
    voiceFeatures: 61,
  };
  readonly events: SentEvent[] = [];
  readonly responses: unknown[] = [];
  /** When each piece of the reply arrived (performance.now()). */
  readonly chunkTimes: number[] = [];
  reply: Promise<{ contentType: string | null; bytes: Buffer }> | null = null;
  /** Abort the reply download after this many bytes (the stop word). */
  stopAfterBytes: number | null = null;
  #stopped!: () => void;
  readonly stopped = new Promise<void>((r) => (this.#stopped = r));
  #runUrl = "";

  subscribeVoice(): void {}
  respondToRequest(r: unknown): void {
    this.responses.push(r);
  }
  sendVoiceEvent(type: number, data: Record<string, string> = {}): void {
    this.events.push({ type, data });
    if (type === VoiceEvent.RUN_START) this.#runUrl = data.url ?? "";
    if (type === VoiceEvent.INTENT_PROGRESS && data.tts_start_streaming === "1") this.reply = this.#fetch();
  }
  sendTimerEvent(): void {}
  announce(): void {}
  voiceConfiguration(): Promise<never> {
    return Promise.reject(new Error("not used"));
  }
  close(): void {}

  wake(conversationId = ""): void {
    const req: VoiceRequest = {
      start: true,
      conversationId,
      flags: 1,
      audioSettings: { noiseSuppressionLevel: 0, autoGain: 0, volumeMultiplier: 1 },
      wakeWordPhrase: "Okay Nabu",
    };
    this.emit("voice.request", req);
  }

  /** Microphone frames of at most 1024 bytes, as fast as the upstream takes them (its VAD counts audio time). */
  speak(pcm16k: Buffer): void {
    for (let i = 0; i < pcm16k.length; i += 1024)
      this.emit("voice.audio", { pcm: pcm16k.subarray(i, i + 1024), end: false });
  }

  async #fetch(): Promise<{ contentType: string | null; bytes: Buffer }> {
    const ac = new AbortController();
    const res = await fetch(this.#runUrl, { signal: ac.signal });
    const chunks: Buffer[] = [];
    let n = 0;
    const reader = res.body!.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(Buffer.from(value));
        this.chunkTimes.push(performance.now());
        n += value.length;
        if (this.stopAfterBytes !== null && n >= this.stopAfterBytes) {
          ac.abort();
          break;
        }
      }
    } catch {
      // aborted: the stop word
    }
    if (this.stopAfterBytes !== null) {
      this.#stopped();
      this.emit("voice.announce_finished", { success: true });
    }
    return { contentType: res.headers.get("content-type"), bytes: Buffer.concat(chunks) };
  }
}

let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;
let http: FastifyInstance | undefined;
let host: VoiceHost | undefined;

afterEach(async () => {
  await host?.close();
  await http?.close();
  await engine?.close();
  await fake?.close();
  host = http = engine = fake = undefined;
});

async function setup(
  fakeOpts: FakeRealtimeOptions = {},
  format: ReplyFormat = "wav",
): Promise<{ device: RecordingDevice; fake: FakeRealtimeServer; metrics: ReturnType<typeof freshMetrics> }> {
  fake = await startFakeRealtime(fakeOpts);
  const metrics = freshMetrics();
  const logger = silentLogger();
  engine = new RealtimeEngine({
    config: makeConfig(fake.url),
    tools: new RecordingTools(),
    approvals: new ApprovalQueue({ timeoutS: 30 }),
    logger,
    metrics,
  });
  let base = "";
  const streams = new ReplyStreams({ baseUrl: () => base, logger });
  http = Fastify();
  await http.register(streams.plugin);
  await http.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(http.server.address() as { port: number }).port}`;
  const device = new RecordingDevice();
  host = new VoiceHost("voice-test", device, {
    conversations: engine,
    speech: engine,
    streams,
    format,
    conversationIdleS: 60,
    logger,
    metrics,
  });
  return { device, fake, metrics };
}

const speech = async (): Promise<Buffer> => {
  const wav = parseWav(await readFile(new URL("kitchen_light_16k.wav", FIXTURES)));
  return Buffer.from(wav.samples.buffer, wav.samples.byteOffset, wav.samples.byteLength);
};
const silence16k = (ms: number): Buffer => Buffer.alloc(Math.round(16 * ms) * 2);

const typesOf = (events: SentEvent[]): number[] => events.map((e) => e.type);
const E = VoiceEvent;

async function runEnd(device: RecordingDevice, count = 1): Promise<void> {
  await expect
    .poll(() => device.events.filter((e) => e.type === E.RUN_END).length, { timeout: 10_000 })
    .toBeGreaterThanOrEqual(count);
}

describe("ESPHome voice run", () => {
  it("answers at once, sends Home Assistant's events in order and streams the whole reply", async () => {
    const reply = tone(800);
    const { device, metrics } = await setup({
      replyAudio: reply,
      replyTranscript: "The kitchen light is on.",
      userTranscript: "turn on the kitchen light",
    });
    device.wake();
    expect(device.responses).toEqual([{ port: 0 }]);
    expect(device.events.map((e) => e.type)).toEqual([E.RUN_START, E.STT_START]);
    expect(device.events[0]!.data.url).toMatch(
      /^http:\/\/127\.0\.0\.1:\d+\/api\/esphome\/reply\/[0-9a-f]{32}\.wav$/,
    );
    device.speak(await speech());
    device.speak(silence16k(1500));
    await runEnd(device);
    expect(typesOf(device.events)).toEqual(FULL_RUN);
    const data = (t: number): Record<string, string> => device.events.find((e) => e.type === t)!.data;
    expect(data(E.STT_END)).toEqual({ text: "turn on the kitchen light" });
    expect(data(E.INTENT_PROGRESS)).toEqual({ tts_start_streaming: "1" });
    expect(data(E.INTENT_END).conversation_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(data(E.INTENT_END).continue_conversation).toBe("0");
    expect(data(E.TTS_START)).toEqual({ text: "The kitchen light is on." });
    expect(data(E.TTS_END)).toEqual({ url: device.events[0]!.data.url });
    const got = await device.reply!;
    expect(got.contentType).toBe("audio/wav");
    expect(got.bytes.subarray(0, 4).toString("latin1")).toBe("RIFF");
    expect(got.bytes.length - 44).toBe(reply.length);
    expect(got.bytes.subarray(44).equals(reply)).toBe(true);
    await expect
      .poll(() => metricValue(metrics, "openvoice_esphome_turns_total", { outcome: "answered" }))
      .toBe(1);
  });

  it("a question lets the device listen again, and its next request continues the conversation", async () => {
    const { device, fake } = await setup({ replyAudio: tone(300), replyTranscript: "Which room?" });
    device.wake();
    device.speak(await speech());
    device.speak(silence16k(1500));
    await runEnd(device);
    const end = device.events.find((e) => e.type === E.INTENT_END)!.data;
    expect(end.continue_conversation).toBe("1");
    const first = device.events.length;
    device.wake(end.conversation_id);
    device.speak(await speech());
    device.speak(silence16k(1500));
    await runEnd(device, 2);
    expect(typesOf(device.events.slice(first))).toEqual(FULL_RUN);
    expect(device.events.slice(first).find((e) => e.type === E.INTENT_END)!.data.conversation_id).toBe(
      end.conversation_id,
    );
    expect(fake.connections).toHaveLength(1); // the same upstream conversation
  });

  it("a stop during the reply truncates the item at what was played, cancels, and sends no error", async () => {
    // A long reply sent slowly: the device stops while the answer is still streaming.
    const { device, fake } = await setup({ replyAudio: tone(6000), audioSpeed: 1, chunkMs: 100 });
    device.stopAfterBytes = 44 + 48 * 1800; // ~1.8 s of 24 kHz PCM16: past the WAV start rule (~1.5 s)
    device.wake();
    device.speak(await speech());
    device.speak(silence16k(1500));
    await device.stopped;
    await runEnd(device);
    const types = typesOf(device.events);
    expect(types).not.toContain(E.ERROR);
    expect(types).not.toContain(E.TTS_END);
    expect(types.slice(-2)).toEqual([E.INTENT_END, E.RUN_END]);
    const conn = fake.connections[0]!;
    await conn.waitFor("conversation.item.truncate");
    const truncate = conn.received.find((e) => e.type === "conversation.item.truncate") as {
      audio_end_ms: number;
    };
    // Served ~1.8 s; the device starts after its start rule (~1.5 s of WAV), so it played a little of it,
    // not what it was served.
    expect(truncate.audio_end_ms).toBeGreaterThan(0);
    expect(truncate.audio_end_ms).toBeLessThan(1200);
  });

  it("the device ends the run itself (start: false, e.g. voice_assistant.stop): only INTENT_END with the conversation and RUN_END follow, the reply is cut upstream", async () => {
    const { device, fake, metrics } = await setup({ replyAudio: tone(6000), audioSpeed: 1, chunkMs: 100 });
    device.wake();
    device.speak(await speech());
    device.speak(silence16k(1500));
    await expect.poll(() => device.reply !== null, { timeout: 10_000 }).toBe(true);
    const sentBefore = device.events.length;
    device.emit("voice.request", {
      start: false,
      conversationId: "",
      flags: 0,
      audioSettings: { noiseSuppressionLevel: 0, autoGain: 0, volumeMultiplier: 1 },
      wakeWordPhrase: "",
    });
    const conn = fake.connections[0]!;
    await conn.waitFor("conversation.item.truncate");
    await new Promise((r) => setTimeout(r, 300));
    // No TTS_END (DESIGN §11's trap); the conversation id, so the next wake continues it.
    const after = device.events.slice(sentBefore);
    expect(typesOf(after)).toEqual([E.INTENT_END, E.RUN_END]);
    expect(after[0]!.data).toEqual({ conversation_id: expect.any(String), continue_conversation: "0" });
    expect(after[0]!.data.conversation_id).not.toBe("");
    expect(await metricValue(metrics, "openvoice_esphome_turns_total", { outcome: "aborted" })).toBe(1);
  });

  it("a conversation that cannot start ends the run with ERROR carrying the engine's code and words, then RUN_END", async () => {
    const { device } = await setup({
      refuseSession: () => ({ code: "insufficient_quota", message: "You exceeded your current quota" }),
    });
    device.wake();
    await runEnd(device);
    const types = typesOf(device.events);
    expect(types).toEqual([E.RUN_START, E.STT_START, E.ERROR, E.RUN_END]);
    const err = device.events[2]!.data;
    expect(err.code).toBe("upstream_unavailable");
    expect(err.message).toMatch(/quota/i);
  });
});

/** A conversation driven by the test: it emits the upstream's events and records the turn's commands. */
class ScriptedConversation extends EventEmitter<ConversationEvents> {
  readonly id = "scripted";
  readonly turns = new EventEmitter<TurnEvents>();
  readonly appended: Buffer[] = [];
  appendAudio(pcm: Buffer): void {
    this.appended.push(pcm);
  }
  commitAndRespond(): void {}
  cancelResponse(): void {}
  cancelTurn(): void {}
  interrupt(): void {}
  end(): Promise<void> {
    return Promise.resolve();
  }
}

describe("ESPHome voice run with a scripted upstream", () => {
  it("a tool that runs 6 s after the reply began: the stream stays alive (no gap near the device's 5 s read timeout)", async () => {
    const logger = silentLogger();
    const streams = new ReplyStreams({ baseUrl: () => base, logger });
    http = Fastify();
    await http.register(streams.plugin);
    await http.listen({ host: "127.0.0.1", port: 0 });
    const base = `http://127.0.0.1:${(http.server.address() as { port: number }).port}`;
    const device = new RecordingDevice();
    const conv = new ScriptedConversation();
    const turn = new VoiceTurn({
      device,
      conversation: Promise.resolve(conv),
      conversationId: "c1",
      stream: streams.open({ device: "voice-test", format: "wav" }),
      startRuleMs: 1500,
      logger,
    });
    turn.start();
    await new Promise((r) => setImmediate(r));
    conv.emit("speech.started");
    conv.emit("speech.stopped");
    conv.emit("transcript", { role: "user", text: "how warm is it", final: true });
    conv.emit("response.start", { id: "r1" });
    conv.emit("audio", { responseId: "r1", itemId: "i1", pcm: tone(300) });
    // The device starts fetching; record when each piece of the stream arrives.
    await expect.poll(() => device.reply !== null).toBe(true);
    conv.emit("response.end", { id: "r1", reason: "done" });
    conv.emit("tool", { name: "weather", server: "toy", status: "started" });
    await new Promise((r) => setTimeout(r, 6000));
    conv.emit("tool", { name: "weather", server: "toy", status: "completed" });
    conv.emit("response.start", { id: "r2" });
    conv.emit("audio", { responseId: "r2", itemId: "i2", pcm: tone(300) });
    conv.emit("transcript", { role: "assistant", text: "It is 21 degrees.", final: true });
    conv.emit("response.end", { id: "r2", reason: "done" });
    conv.turns.emit("idle");
    const result = await turn.done;
    expect(result.outcome).toBe("answered");
    const got = await device.reply!;
    // 300 ms + about 6 s of keep-alive silence + 300 ms: the device was fed all along, never near its 5 s limit.
    expect((got.bytes.length - 44) / 48).toBeGreaterThan(600 + 4000);
    const gaps = device.chunkTimes.slice(1).map((t, i) => t - device.chunkTimes[i]!);
    expect(Math.max(...gaps)).toBeLessThan(2500);
    expect(typesOf(device.events)).toEqual(FULL_RUN);
  });
});
