/**
 * End to end on loopback: an emulated Voice PE (Noise, the firmware's voice assistant and media
 * player) ⇄ the whole service (device manager, turn, reply streams over HTTP) ⇄ the real engine ⇄ the
 * fake Realtime server. Fixture speech in, reply audio out, checked on what the device played.
 */
import { afterEach, describe, expect, it } from "vitest";
import { VoiceEvent } from "../src/esphome/api/index.js";
import {
  LINUX_VOICE_ASSISTANT_FLAGS,
  type EmulatedDevice,
  type RunRecord,
} from "./esphome/emulator/index.js";
import { metricValue } from "./fake-realtime/helpers.js";
import { tone } from "./fake-realtime/server.js";
import { FULL_RUN, startHarness, utterance, type Harness } from "./esphome-helpers.js";

const KEY = Buffer.alloc(32, 7).toString("base64");
const E = VoiceEvent;

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe("ESPHome voice satellite end to end", () => {
  it("a full turn: fixture speech in, the reply played by the device, events in Home Assistant's order", async () => {
    const reply = tone(900);
    h = await startHarness({
      devices: [{ encryptionKey: KEY }],
      entries: [{ encryption_key: KEY, take_over: true }],
      fake: { replyAudio: reply, userTranscript: "turn on the kitchen light", replyTranscript: "Done." },
    });
    const dev = h.devices[0]!;
    const view = await h.waitDevice(dev.name, (d) => d.owner === "openvoice");
    expect(view).toMatchObject({
      host: "127.0.0.1",
      port: dev.port,
      source: "options",
      voice: true,
      connected: true,
      take_over: true,
      error: null,
    });
    expect(JSON.stringify(await h.list())).not.toContain(KEY);
    expect(dev.voiceOwner).toMatch(/^OpenVoice MCP /);

    const run = await dev.wake(await utterance());
    expect(run.error).toBeNull();
    expect(run.events.map((e) => e.type)).toEqual(FULL_RUN);
    expect(run.events.find((e) => e.type === E.STT_END)!.data.text).toBe("turn on the kitchen light");
    expect(run.contentType).toBe("audio/wav");
    expect(run.firstSoundAt).not.toBeNull();
    // What the device played is the upstream's reply, sample for sample.
    expect(run.replyBytes.equals(reply)).toBe(true);
    expect(dev.state).toBe("IDLE");
    const after = await h.waitDevice(dev.name, (d) => d.last_turn !== null);
    expect(after.last_turn).toMatchObject({ outcome: "answered", error: null });
    expect(await metricValue(h.app.metrics, "openvoice_esphome_turns_total", { outcome: "answered" })).toBe(
      1,
    );
    expect(await metricValue(h.app.metrics, "openvoice_esphome_connected", { device: dev.name })).toBe(1);
  });

  it("a question: the device listens again by itself and the follow-up continues the same conversation", async () => {
    h = await startHarness({ entries: [{ take_over: true }], fake: { replyAudio: tone(300) } });
    h.fake.script(
      { kind: "speak", transcript: "Which room?" },
      { kind: "speak", transcript: "The living room light is on." },
    );
    const dev = h.devices[0]!;
    await h.waitDevice(dev.name, (d) => d.owner === "openvoice");
    const run = await dev.wake(await utterance(), { followUp: await utterance("living_room_16k.wav") });
    expect(run.events.find((e) => e.type === E.INTENT_END)!.data.continue_conversation).toBe("1");
    expect(run.followUps).toHaveLength(1);
    const follow = run.followUps[0]!;
    expect(follow.events.map((e) => e.type)).toEqual(FULL_RUN);
    expect(follow.events.find((e) => e.type === E.INTENT_END)!.data.continue_conversation).toBe("0");
    const id = run.events.find((e) => e.type === E.INTENT_END)!.data.conversation_id;
    expect(follow.events.find((e) => e.type === E.INTENT_END)!.data.conversation_id).toBe(id);
    // One upstream conversation served both runs (the pool's spare aside).
    const withAudio = h.fake.connections.filter((c) =>
      c.received.some((e) => e.type === "input_audio_buffer.append"),
    );
    expect(withAudio).toHaveLength(1);
  });

  /**
   * A long reply is stopped on the device by `stop` once some of it played: truncated at what the
   * device played, no error, no TTS_END (DESIGN §11's trap), the device idle, and the next wake
   * continues the same upstream conversation.
   */
  async function stoppedDuringReply(stop: (dev: EmulatedDevice) => Promise<RunRecord | void>): Promise<void> {
    h = await startHarness({
      entries: [{ take_over: true }],
      fake: { replyAudio: tone(8000), audioSpeed: 1 },
    });
    const dev = h.devices[0]!;
    await h.waitDevice(dev.name, (d) => d.owner === "openvoice");
    h.fake.script({ kind: "speak" }, { kind: "speak", audio: tone(300) });
    const running = dev.wake(await utterance());
    await expect.poll(() => dev.state, { timeout: 10_000 }).toBe("STREAMING_RESPONSE");
    await new Promise((r) => setTimeout(r, 2200)); // past the WAV start rule: some of it plays
    const stopped = await stop(dev);
    const run = await running;
    if (stopped) expect(stopped).toBe(run); // a wake word during a run starts no run of its own
    expect(run.error).toBeNull();
    expect(run.followUps).toHaveLength(0);
    const types = run.events.map((e) => e.type);
    expect(types).not.toContain(E.ERROR);
    expect(types).not.toContain(E.TTS_END);
    expect(dev.state).toBe("IDLE");
    const conn = h.fake.connections.find((c) =>
      c.received.some((e) => e.type === "input_audio_buffer.append"),
    )!;
    await conn.waitFor("conversation.item.truncate");
    const t = conn.received.find((e) => e.type === "conversation.item.truncate") as { audio_end_ms: number };
    expect(t.audio_end_ms).toBeGreaterThan(0);
    expect(t.audio_end_ms).toBeLessThan(run.playedMs + 400);
    const id = run.events.find((e) => e.type === E.INTENT_END)!.data.conversation_id;
    const next = await dev.wake(await utterance());
    expect(next.events.map((e) => e.type)).toEqual(FULL_RUN);
    expect(next.events.find((e) => e.type === E.INTENT_END)!.data.conversation_id).toBe(id);
    // One upstream conversation heard both questions.
    const withAudio = h.fake.connections.filter((c) =>
      c.received.some((e) => e.type === "input_audio_buffer.append"),
    );
    expect(withAudio).toEqual([conn]);
  }

  it("the stop word during the reply: truncated at what the device played, no error, and the next wake continues", async () => {
    await stoppedDuringReply((dev) => Promise.resolve(dev.stopWord()));
  });

  it("barge-in: a wake word during the reply stops it as the Voice PE does (voice_assistant.stop), truncated, no error, and the next wake continues", async () => {
    await stoppedDuringReply(async (dev) => dev.wake(await utterance()));
  });

  it("a wake word while the device awaits the answer: the run ends (RUN_END), no error, the device idle, and the next wake continues", async () => {
    h = await startHarness({
      entries: [{ take_over: true }],
      fake: { replyAudio: tone(300), replyDelayMs: 2500 },
    });
    const dev = h.devices[0]!;
    await h.waitDevice(dev.name, (d) => d.owner === "openvoice");
    const running = dev.wake(await utterance());
    await expect.poll(() => dev.state, { timeout: 10_000 }).toBe("AWAITING_RESPONSE");
    await dev.wake(await utterance()); // voice_assistant.stop: start=false, then it waits for RUN_END
    const run = await running;
    expect(dev.state).toBe("IDLE");
    expect(run.error).toBeNull();
    const types = run.events.map((e) => e.type);
    expect(types.slice(-2)).toEqual([E.INTENT_END, E.RUN_END]);
    expect(types).not.toContain(E.TTS_END);
    const id = run.events.find((e) => e.type === E.INTENT_END)!.data.conversation_id;
    const next = await dev.wake(await utterance());
    expect(next.events.map((e) => e.type)).toEqual(FULL_RUN);
    expect(next.events.find((e) => e.type === E.INTENT_END)!.data.conversation_id).toBe(id);
  });

  it("failover: the upstream drops between runs; the next wake is answered in the same conversation, its turns carried over", async () => {
    h = await startHarness({
      entries: [{ take_over: true }],
      fake: { replyAudio: tone(300), userTranscript: "turn on the kitchen light", replyTranscript: "Done." },
    });
    const dev = h.devices[0]!;
    await h.waitDevice(dev.name, (d) => d.owner === "openvoice");
    const first = await dev.wake(await utterance());
    expect(first.error).toBeNull();
    const conn = h.fake.connections.find((c) =>
      c.received.some((e) => e.type === "input_audio_buffer.append"),
    )!;
    const before = h.fake.connections.length;
    conn.drop();
    await expect.poll(() => h!.fake.connections.length, { timeout: 10_000 }).toBeGreaterThan(before);
    const next = await dev.wake(await utterance());
    expect(next.error).toBeNull();
    expect(next.events.map((e) => e.type)).toEqual(FULL_RUN);
    const id = (r: RunRecord): string | undefined =>
      r.events.find((e) => e.type === E.INTENT_END)?.data.conversation_id;
    expect(id(next)).toBe(id(first));
    const heard = h.fake.connections.find(
      (c) => c !== conn && c.received.some((e) => e.type === "input_audio_buffer.append"),
    )!;
    const instructions = heard.received
      .flatMap((e) =>
        e.type === "session.update" && e.session.type === "realtime" ? [e.session.instructions ?? ""] : [],
      )
      .join("\n");
    expect(instructions).toContain("User: turn on the kitchen light");
    expect(instructions).toContain("Assistant: Done.");
  });

  it("linux-voice-assistant's feature flags are served like a Voice PE", async () => {
    h = await startHarness({
      devices: [{ featureFlags: LINUX_VOICE_ASSISTANT_FLAGS, name: "linux-voice-assistant" }],
      entries: [{ take_over: true }],
    });
    const dev = h.devices[0]!;
    await h.waitDevice("linux-voice-assistant", (d) => d.owner === "openvoice");
    const run = await dev.wake(await utterance());
    expect(run.events.map((e) => e.type)).toEqual(FULL_RUN);
  });

  it("a device without a voice assistant is ignored", async () => {
    h = await startHarness({ devices: [{ featureFlags: 0, name: "plain-sensor" }, { name: "voice-one" }] });
    await h.waitDevice("voice-one", (d) => d.connected);
    await new Promise((r) => setTimeout(r, 200));
    expect((await h.list()).map((d) => d.name)).toEqual(["voice-one"]);
  });
});
