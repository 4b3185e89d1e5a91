/**
 * Dialect `va_client` end to end: a scripted device that behaves like the firmware → the firmware
 * port → the real engine → the fake Realtime server. The device connects at boot with the header
 * `Authorization: Bearer ` (its token is empty unless built with one) and sends `{"type":"start"}`;
 * from the wake word it streams PCM16 16 kHz in 32 ms frames, gives up with `interrupt` if no
 * `listening` comes within 7 s, and follows `"value":"<phase>"` substrings: `listening` opens the
 * microphone, `thinking`/`replying` close it (unless built with barge-in), `idle` after a turn closes
 * it (the hello's follow_up_ms is 0). `"type":"error"` plays its error chime.
 */
import { afterEach, describe, expect, it } from "vitest";
import { metricValue } from "./fake-realtime/helpers.js";
import { tone } from "./fake-realtime/server.js";
import type { RefusedUpgrade } from "./firmware-helpers.js";
import {
  DeviceSocket,
  fixture,
  framesFit,
  loud,
  maxLeadMs,
  pcmOf,
  sleep,
  useFirmwareRig,
  type FirmwareHarness,
  type Mic,
} from "./firmware-helpers.js";

const HELLO =
  '{"type":"hello","audio_out":"pcm","interrupt_response":false,"follow_up_ms":0,' +
  '"follow_up_open_delay_ms":700,"wake_open_delay_ms":700,"playback_prebuffer_ms":0}';
const FRAME_BYTES = 1024;
const NO_SPEECH_MS = 7000;
const HALL_TOKEN = "hall-device-token-0123456789";

const rig = useFirmwareRig();
let h: FirmwareHarness | null = null;

class Firmware {
  phase = "idle";
  readonly phases: { value: string; at: number }[] = [];
  streaming = false;
  errors = 0;
  wokeAt = 0;
  sentBytes = 0;
  #watchdog: NodeJS.Timeout | null = null;

  constructor(
    readonly dev: DeviceSocket,
    readonly mic: Mic,
    readonly bargeIn = false,
  ) {
    dev.onFrame = (f) => {
      if (f.text === undefined) return;
      if (f.text.includes('"type":"error"')) {
        this.errors++;
        return this.#set("idle");
      }
      for (const p of ["listening", "thinking", "replying", "idle"])
        if (f.text.includes(`"value":"${p}"`)) return this.#set(p);
    };
    mic.open = () => this.streaming;
    mic.onSend = (frame) => {
      this.sentBytes += frame.length;
    };
    dev.sendText('{"type":"start"}');
    mic.start();
  }

  #set(p: string): void {
    const prev = this.phase;
    this.phase = p;
    this.phases.push({ value: p, at: performance.now() });
    if (p === "listening") {
      this.streaming = true;
      this.#clearWatchdog();
    } else if (p === "thinking" || p === "replying") {
      if (!this.bargeIn) this.streaming = false;
    } else if (prev === "thinking" || prev === "replying") this.streaming = false;
  }

  /** The wake word fired: stream, and give up after 7 s without `listening`. */
  wake(): void {
    this.streaming = true;
    this.wokeAt = performance.now();
    this.#clearWatchdog();
    this.#watchdog = setTimeout(() => {
      this.dev.sendText('{"type":"interrupt"}');
      this.streaming = false;
    }, NO_SPEECH_MS);
  }

  /** The user said "stop". */
  interrupt(): void {
    this.dev.sendText('{"type":"interrupt"}');
  }

  #clearWatchdog(): void {
    if (this.#watchdog !== null) clearTimeout(this.#watchdog);
    this.#watchdog = null;
  }

  dispose(): void {
    this.#clearWatchdog();
  }
}

const firmwares: Firmware[] = [];
afterEach(() => {
  for (const f of firmwares.splice(0)) f.dispose();
});

async function boot(
  harness: FirmwareHarness,
  opts: { token?: string; bargeIn?: boolean } = {},
): Promise<Firmware> {
  const dev = await rig.device(harness.url("/"), {
    headers: { Authorization: `Bearer ${opts.token ?? ""}` },
  });
  const mic = rig.mic(dev, 16_000, FRAME_BYTES);
  const fw = new Firmware(dev, mic, opts.bargeIn);
  firmwares.push(fw);
  await dev.waitText('"type":"hello"');
  return fw;
}

/** Wake word, then the fixture sentence; resolves when the firmware has closed its microphone. */
async function ask(fw: Firmware): Promise<void> {
  const speech = pcmOf(await fixture("kitchen_light_16k.wav"));
  fw.wake();
  await fw.mic.say(speech);
  await fw.dev.waitText('"value":"thinking"', 10_000);
}

describe("va_client: connect and refusals", () => {
  it("start → the compact hello it expects; an unlisted address gets 403 and shows as va_client", async () => {
    h = await rig.start({
      dialects: ["fjfricke", "va_client"],
      devices: [{ id: "other", address: "::1" }],
    });
    const refused = await DeviceSocket.connect(h.url("/"), { headers: { Authorization: "Bearer " } }).catch(
      (e: unknown) => e,
    );
    expect((refused as RefusedUpgrade).status).toBe(403);
    expect(h.access.refused()).toMatchObject([{ address: "127.0.0.1", dialect: "va_client" }]);
    expect(
      await metricValue(h.metrics, "openvoice_dialect_refusals_total", { dialect: "va_client", code: "403" }),
    ).toBe(1);
    await h.access.allow("127.0.0.1");
    const fw = await boot(h);
    expect(fw.dev.texts()).toEqual([HELLO]);
    expect(h.registry.devices()).toEqual([
      { clientId: "va_client-127.0.0.1", dialect: "va_client", state: "idle" },
    ]);
  });

  it("a firmware built with a token is accepted by that token wherever it is", async () => {
    h = await rig.start({ dialects: ["va_client"], devices: [{ id: "hall", token: HALL_TOKEN }] });
    const fw = await boot(h, { token: HALL_TOKEN });
    expect(fw.dev.texts()).toEqual([HELLO]);
    expect(h.registry.devices()).toMatchObject([{ clientId: "hall", dialect: "va_client" }]);
  });

  it("a configured IPv6 address matches the peer in any spelling (0:0:0:0:0:0:0:1 is ::1)", async () => {
    h = await rig.start({
      dialects: ["va_client"],
      host: "::1",
      devices: [{ id: "loft", address: "0:0:0:0:0:0:0:1" }],
    });
    const fw = await boot(h);
    expect(fw.dev.texts()).toEqual([HELLO]);
    expect(h.registry.devices()).toMatchObject([{ clientId: "loft", dialect: "va_client" }]);
    expect(h.access.refused()).toEqual([]);
  });

  it("closes 1008 when its first frame names a dialect that is not enabled", async () => {
    h = await rig.start({ dialects: ["fjfricke"] });
    const dev = await rig.device(h.url("/"), { headers: { Authorization: "Bearer " } });
    dev.sendText('{"type":"start"}');
    expect((await dev.waitClose()).code).toBe(1008);
  });
});

describe("va_client: turns", () => {
  it("a full turn: listening within its 7 s, thinking closes the mic, a paced reply, then idle", async () => {
    h = await rig.start({ dialects: ["va_client"], fake: { replyAudio: tone(1500), audioSpeed: 8 } });
    const fw = await boot(h);
    await ask(fw);
    await fw.dev.waitText('"value":"idle"', 10_000);
    const values = fw.phases.map((p) => p.value);
    expect(values).toEqual(["listening", "thinking", "replying", "idle"]);
    expect(fw.phases[0]!.at - fw.wokeAt).toBeLessThan(NO_SPEECH_MS);
    expect(fw.streaming).toBe(false);
    // The end of the reply's audio is announced before the turn's idle.
    expect(fw.dev.texts().slice(1)).toEqual([
      ...["listening", "thinking", "replying"].map((v) => `{"type":"phase","value":"${v}"}`),
      '{"type":"audio_done"}',
      '{"type":"phase","value":"idle"}',
    ]);
    const done = fw.dev.frames.findIndex((f) => f.text === '{"type":"audio_done"}');
    expect(fw.dev.frames.slice(done).some((f) => f.binary !== undefined)).toBe(false);
    const frames = fw.dev.audio();
    expect(frames.reduce((n, f) => n + f.binary!.length, 0)).toBe(72_000);
    expect(framesFit(frames)).toBe(true);
    expect(maxLeadMs(frames, 24_000)).toBeLessThanOrEqual(300);
    expect(frames.at(-1)!.at - frames[0]!.at).toBeGreaterThan(1100);
    // 16 kHz up became 24 kHz upstream: half as many bytes again as the device sent.
    const conn = h.fake.connections[0]!;
    const upBytes = conn.received.reduce(
      (n, e) => n + (e.type === "input_audio_buffer.append" ? Buffer.from(e.audio, "base64").length : 0),
      0,
    );
    expect(upBytes).toBeGreaterThan(fw.sentBytes * 1.5 - 200);
    expect(upBytes).toBeLessThanOrEqual(fw.sentBytes * 1.5);
  });

  it("a tool call, then the spoken answer and idle", async () => {
    h = await rig.start({ dialects: ["va_client"], fake: { replyAudio: tone(300) } });
    h.fake.script({ kind: "function_call", name: "HassTurnOn", arguments: "{}" });
    const fw = await boot(h);
    await ask(fw);
    await fw.dev.waitText('"value":"idle"', 10_000);
    expect(h.tools.calls).toEqual([{ name: "HassTurnOn", args: "{}" }]);
    expect(fw.dev.audio().length).toBeGreaterThan(0);
  });

  it("interrupt from the device stops the reply upstream and on the wire, then idle", async () => {
    h = await rig.start({ dialects: ["va_client"], fake: { replyAudio: tone(4000), audioSpeed: 8 } });
    const fw = await boot(h);
    await ask(fw);
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    await sleep(300);
    fw.interrupt();
    await fw.dev.waitText('"value":"idle"', 3000);
    const conn = h.fake.connections[0]!;
    await expect
      .poll(() => conn.received.some((e) => e.type === "conversation.item.truncate"), { timeout: 3000 })
      .toBe(true);
    // The turn is dropped upstream too: nothing said before the interrupt joins the next question.
    expect(conn.all("input_audio_buffer.clear")).toHaveLength(1);
    const n = fw.dev.audio().length;
    await sleep(400);
    expect(fw.dev.audio().length).toBe(n);
  });

  it("interrupt while thinking: the answer the upstream starts afterwards is cancelled and never plays", async () => {
    // A busy upstream: server VAD's response starts 400 ms after the end of the turn.
    h = await rig.start({
      dialects: ["va_client"],
      fake: { replyAudio: tone(800), responseCreatedDelayMs: 400 },
    });
    const fw = await boot(h);
    fw.wake();
    void fw.mic.say(pcmOf(await fixture("kitchen_light_16k.wav")));
    await fw.dev.waitText('"value":"thinking"', 10_000);
    fw.interrupt();
    await fw.dev.waitText('"value":"idle"', 3000);
    const conn = h.fake.connections[0]!;
    await expect
      .poll(() => conn.all("response.cancel").some((e) => e.response_id !== undefined), { timeout: 3000 })
      .toBe(true);
    await sleep(600);
    expect(fw.dev.audio()).toHaveLength(0);
    expect(fw.phases.map((p) => p.value)).not.toContain("replying");
    expect(conn.all("input_audio_buffer.clear")).toHaveLength(1);
  });

  it("barge-in (firmware built with barge-in): speech during the reply → listening, and the audio stops", async () => {
    h = await rig.start({
      dialects: ["va_client"],
      fake: { replyAudio: tone(4000), audioSpeed: 8, vad: { speechMs: 60, silenceMs: 300 } },
    });
    const fw = await boot(h, { bargeIn: true });
    await ask(fw);
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    await sleep(600);
    await fw.mic.say(loud(400, 16_000));
    const heard = await fw.dev.waitText('"value":"listening"', 5000, 3);
    // Nothing more of the interrupted reply: the next audio belongs to the reply to the new speech.
    const next = await fw.dev.waitText('"value":"thinking"', 5000, fw.dev.frames.indexOf(heard));
    const between = fw.dev.frames.slice(fw.dev.frames.indexOf(heard) + 1, fw.dev.frames.indexOf(next));
    expect(between.filter((f) => f.binary)).toHaveLength(0);
    expect(fw.phases.map((p) => p.value).slice(0, 4)).toEqual([
      "listening",
      "thinking",
      "replying",
      "listening",
    ]);
  });

  it("an upstream that refuses every session after a drop: the error chime and idle at once, the reason in words", async () => {
    h = await rig.start({ dialects: ["va_client"], fake: { replyAudio: tone(300) } });
    const fw = await boot(h);
    await ask(fw);
    await fw.dev.waitText('"value":"idle"', 10_000);
    const from = fw.dev.frames.length;
    h.fake.fault("quota", { dropOpen: true });
    const told = await fw.dev.waitText('"type":"error"', 3000, from);
    expect(JSON.parse(told.text!)).toEqual({
      type: "error",
      code: "upstream_unavailable",
      message: "OpenAI quota exceeded",
    });
    expect(fw.errors).toBe(1);
    expect(fw.phase).toBe("idle");
    expect(fw.dev.closed).toBeNull();
    // Once OpenAI accepts sessions again, the next wake is answered.
    h.fake.fault(null);
    await ask(fw);
    await fw.dev.waitText('"value":"replying"', 10_000);
  });

  it("the end of a conversation: idle, the upstream released, the device stays connected for its next wake", async () => {
    h = await rig.start({
      dialects: ["va_client"],
      conversationIdleS: 5,
      fake: { replyAudio: tone(300) },
    });
    const fw = await boot(h);
    await ask(fw);
    await fw.dev.waitText('"value":"idle"', 10_000);
    const first = h.fake.connections[0]!;
    await expect.poll(() => first.closed, { timeout: 8000 }).toBe(true);
    expect(fw.dev.closed).toBeNull();
    expect(fw.errors).toBe(0);
    await ask(fw);
    await expect.poll(() => h!.fake.connections.length, { timeout: 5000 }).toBe(2);
  });
});
