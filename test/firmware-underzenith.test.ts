/**
 * Dialect `underzenith` (`realtime_voice_client`) end to end: a scripted device that behaves like the
 * firmware → the firmware port → the real engine → the fake Realtime server. The device connects at
 * boot to `/device/ws` with its bearer token, sends its hello string, and derives its phase from
 * substrings exactly as the firmware does; a turn is `ptt_start`, PCM16 24 kHz while listening, and
 * `ptt_stop` once its own VAD (mean magnitude > 600) has heard speech followed by 900 ms of quiet.
 */
import { describe, expect, it } from "vitest";
import { metricValue } from "./fake-realtime/helpers.js";
import { tone } from "./fake-realtime/server.js";
import {
  DeviceSocket,
  RefusedUpgrade,
  SHARED_TOKEN,
  UZ_ID,
  UZ_TOKEN,
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

const PATH = "/device/ws";
const HELLO = `{"type":"hello","protocol":1,"client_type":"voice_pe","client_id":"${UZ_ID}","name":"Kitchen Voice PE"}`;
const FRAME_BYTES = 960;

const rig = useFirmwareRig();
let h: FirmwareHarness | null = null;

/** The firmware's state, driven only by what it matches in the frames it receives. */
class Firmware {
  phase = "connecting";
  readonly phases: string[] = [];
  listening = false;
  sentBytes = 0;
  #speech = false;
  #lastSpeech = 0;

  constructor(
    readonly dev: DeviceSocket,
    readonly mic: Mic,
  ) {
    dev.onFrame = (f) => {
      if (f.binary !== undefined) return this.#set("speaking");
      const m = f.text!;
      if (
        m.includes('"type": "session_ready"') ||
        m.includes('"type":"session_ready"') ||
        m.includes('"type": "response.done"') ||
        m.includes('"type":"response.done"')
      )
        this.#set("ready");
      else if (m.includes("response.function_call")) this.#set("tool");
      else if (m.includes("response.created")) this.#set("thinking");
      else if (m.includes('"type": "error"') || m.includes('"type":"error"')) this.#set("error");
    };
    mic.open = () => this.listening;
    mic.onSend = (frame) => {
      this.sentBytes += frame.length;
      let magnitude = 0;
      for (let i = 0; i < frame.length; i += 2) magnitude += Math.abs(frame.readInt16LE(i));
      if (magnitude / (frame.length / 2) > 600) {
        this.#speech = true;
        this.#lastSpeech = performance.now();
      } else if (this.#speech && performance.now() - this.#lastSpeech > 900) this.stopTurn();
    };
    dev.sendText(HELLO);
  }

  #set(phase: string): void {
    this.phase = phase;
    this.phases.push(phase);
  }

  startTurn(): void {
    if (this.listening) return;
    this.dev.sendText('{"type":"ptt_start"}');
    this.listening = true;
    this.#speech = false;
    this.#lastSpeech = performance.now();
    this.mic.start();
    this.#set("listening");
  }

  stopTurn(): void {
    if (!this.listening) return;
    this.listening = false;
    this.dev.sendText('{"type":"ptt_stop"}');
    this.#set("thinking");
  }

  cancel(): void {
    this.listening = false;
    this.dev.sendText('{"type":"cancel"}');
    this.#set("ready");
  }
}

async function boot(harness: FirmwareHarness, token = UZ_TOKEN): Promise<Firmware> {
  const dev = await rig.device(harness.url(PATH), {
    headers: { Authorization: `Bearer ${token}` },
  });
  const mic = rig.mic(dev, 24_000, FRAME_BYTES);
  const fw = new Firmware(dev, mic);
  await dev.waitText('"type":"session_ready"');
  return fw;
}

/** One push-to-talk turn with fixture speech; resolves once the device has sent ptt_stop. */
async function turn(fw: Firmware): Promise<void> {
  const speech = pcmOf(await fixture("kitchen_light_24k_sox_vhq.wav"));
  fw.startTurn();
  await fw.mic.say(speech);
  while (fw.listening) await sleep(20);
}

describe("underzenith: connect and auth", () => {
  it("401 before the upgrade without a bearer token or with a wrong one", async () => {
    h = await rig.start({ dialects: ["underzenith"] });
    const attempts: Record<string, string>[] = [{}, { Authorization: "Bearer not-the-token-0123456789" }];
    for (const headers of attempts) {
      const err = await DeviceSocket.connect(h.url(PATH), { headers }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RefusedUpgrade);
      expect((err as RefusedUpgrade).status).toBe(401);
    }
    expect(
      await metricValue(h.metrics, "openvoice_dialect_refusals_total", {
        dialect: "underzenith",
        code: "401",
      }),
    ).toBe(2);
  });

  it("hello → session_ready (compact); a hello for another device closes 1008; a bad first frame 1002", async () => {
    h = await rig.start({ dialects: ["underzenith"] });
    const fw = await boot(h);
    expect(fw.dev.texts()[0]).toBe(`{"type":"session_ready","client_id":"${UZ_ID}"}`);
    expect(fw.phase).toBe("ready");
    expect(h.registry.devices()).toEqual([
      { clientId: UZ_ID, name: "Kitchen Voice PE", dialect: "underzenith", state: "idle" },
    ]);

    const other = await rig.device(h.url(PATH), {
      headers: { Authorization: `Bearer ${UZ_TOKEN}` },
    });
    other.sendText(HELLO.replace(UZ_ID, "living-room"));
    expect((await other.waitClose()).code).toBe(1008);
    expect(other.texts().some((t) => t.includes('"type":"error"'))).toBe(true);

    const bad = await rig.device(h.url(PATH), { headers: { Authorization: `Bearer ${UZ_TOKEN}` } });
    bad.sendText('{"type":"ptt_start"}');
    expect((await bad.waitClose()).code).toBe(1002);
  });

  it("with the shared token any client_id of up to 128 characters names the device; a device token binds its own", async () => {
    h = await rig.start({ dialects: ["underzenith"], devices: [{ id: "hall", address: "127.0.0.1" }] });
    const hello = (id: string) =>
      `{"type":"hello","protocol":1,"client_type":"voice_pe","client_id":${JSON.stringify(id)},"name":"Voice PE"}`;
    const connect = async (id: string, token = SHARED_TOKEN) => {
      const dev = await rig.device(h!.url(PATH), { headers: { Authorization: `Bearer ${token}` } });
      dev.sendText(hello(id));
      return dev;
    };
    const kitchen = await connect("Kitchen PE");
    await kitchen.waitText('"type":"session_ready"');
    expect(kitchen.texts()[0]).toBe('{"type":"session_ready","client_id":"Kitchen PE"}');
    const long = await connect("x".repeat(128));
    await long.waitText('"type":"session_ready"');
    expect(h.registry.devices().map((d) => d.clientId)).toEqual(["Kitchen PE", "x".repeat(128)]);
    const tooLong = await connect("x".repeat(129));
    expect((await tooLong.waitClose()).code).toBe(1002);
    expect(kitchen.closed).toBeNull();
    await h.close();

    // A device token: its own id, spaces and all; another client_id is refused.
    h = await rig.start({ dialects: ["underzenith"], devices: [{ id: "Kitchen PE", token: UZ_TOKEN }] });
    const own = await connect("Kitchen PE", UZ_TOKEN);
    await own.waitText('"type":"session_ready"');
    const other = await connect("Hall PE", UZ_TOKEN);
    expect((await other.waitClose()).code).toBe(1008);
  });
});

describe("underzenith: turns", () => {
  it("a full turn: ptt_start before the upstream is ready is kept, the reply is paced, the events it watches arrive", async () => {
    h = await rig.start({
      dialects: ["underzenith"],
      fake: {
        replyAudio: tone(1500),
        audioSpeed: 8,
        sessionSetupDelayMs: 400,
        replyTranscript: "The light is on.",
      },
    });
    const fw = await boot(h);
    const speech = pcmOf(await fixture("kitchen_light_24k_sox_vhq.wav"));
    await turn(fw);
    await fw.dev.waitText('"type":"response.done"', 10_000);
    const conn = h.fake.connections[0]!;
    // Nothing said before the upstream was ready was lost: the stream starts with the first frame.
    const up = Buffer.concat(
      conn.received.flatMap((e) =>
        e.type === "input_audio_buffer.append" ? [Buffer.from(e.audio, "base64")] : [],
      ),
    );
    const at = up.indexOf(speech.subarray(0, 4800)); // after the first frame or two of room noise
    expect(at).toBeGreaterThanOrEqual(0);
    expect(up.length).toBe(fw.sentBytes); // every byte since ptt_start, the early ones included
    // (up to the device's own end of speech: it stops sending at ptt_stop)
    const n = Math.min(speech.length, up.length - at);
    expect(n).toBeGreaterThan(speech.length / 2);
    expect(up.subarray(at, at + n).equals(speech.subarray(0, n))).toBe(true);
    expect(conn.received.some((e) => e.type === "input_audio_buffer.commit")).toBe(true);
    const texts = fw.dev.texts();
    expect(texts).toContain('{"type":"response.created"}');
    expect(texts).toContain(
      '{"type":"conversation.item.input_audio_transcription.completed","transcript":"turn on the kitchen light"}',
    );
    expect(texts).toContain('{"type":"response.output_audio.done"}');
    expect(texts.some((t) => t.startsWith('{"type":"response.output_audio_transcript.delta","delta":'))).toBe(
      true,
    );
    expect(texts.every((t) => !/[:,] /.test(t.replace(/"(delta|transcript)":"[^"]*"/g, "")))).toBe(true);
    // The firmware's phases, from its own substring matching.
    expect(fw.phases).toEqual(expect.arrayContaining(["listening", "thinking", "speaking", "ready"]));
    expect(fw.phase).toBe("ready");
    const frames = fw.dev.audio();
    expect(frames.reduce((n, f) => n + f.binary!.length, 0)).toBe(72_000);
    expect(framesFit(frames)).toBe(true);
    expect(maxLeadMs(frames, 24_000)).toBeLessThanOrEqual(300);
    expect(frames.at(-1)!.at - frames[0]!.at).toBeGreaterThan(1100);
  });

  it("a tool call shows as response.function_call… (the firmware's tool phase), then the answer is spoken", async () => {
    h = await rig.start({ dialects: ["underzenith"], fake: { replyAudio: tone(300) } });
    h.fake.script({ kind: "function_call", name: "HassTurnOn", arguments: "{}" });
    const fw = await boot(h);
    await turn(fw);
    const call = await fw.dev.waitText("response.function_call", 10_000);
    expect(call.text).toBe('{"type":"response.function_call_arguments.done","name":"HassTurnOn"}');
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    await fw.dev.waitText('"type":"response.done"', 10_000, fw.dev.frames.indexOf(call));
    expect(h.tools.calls).toEqual([{ name: "HassTurnOn", args: "{}" }]);
    expect(fw.phases).toContain("tool");
  });

  it("cancel from the device stops the reply upstream and the audio stops", async () => {
    h = await rig.start({ dialects: ["underzenith"], fake: { replyAudio: tone(4000), audioSpeed: 8 } });
    const fw = await boot(h);
    await turn(fw);
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    await sleep(300);
    fw.cancel();
    const conn = h.fake.connections[0]!;
    await expect
      .poll(() => conn.received.some((e) => e.type === "conversation.item.truncate"), { timeout: 3000 })
      .toBe(true);
    await fw.dev.waitText('"type":"response.done"', 3000);
    const n = fw.dev.audio().length;
    await sleep(400);
    expect(fw.dev.audio().length).toBe(n);
    expect(fw.dev.audio().reduce((b, f) => b + f.binary!.length, 0)).toBeLessThan(192_000);
  });

  it("barge-in: a ptt_start during the reply interrupts it and the new turn is heard", async () => {
    h = await rig.start({ dialects: ["underzenith"], fake: { replyAudio: tone(4000), audioSpeed: 8 } });
    const fw = await boot(h);
    await turn(fw);
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    await sleep(300);
    const before = fw.dev.frames.length;
    fw.startTurn();
    const conn = h.fake.connections[0]!;
    await expect
      .poll(() => conn.received.some((e) => e.type === "conversation.item.truncate"), { timeout: 3000 })
      .toBe(true);
    await fw.dev.waitText('"type":"response.done"', 3000, before);
    await sleep(300);
    const n = fw.dev.audio().length;
    await sleep(300);
    expect(fw.dev.audio().length).toBe(n);
    await fw.mic.say(pcmOf(await fixture("kitchen_light_24k_sox_vhq.wav")));
    while (fw.listening) await sleep(20);
    await expect
      .poll(() => conn.received.filter((e) => e.type === "input_audio_buffer.commit").length, {
        timeout: 5000,
      })
      .toBe(2);
  });

  it("the end of a conversation keeps the device connected; its next turn starts a new conversation", async () => {
    h = await rig.start({
      dialects: ["underzenith"],
      conversationIdleS: 5,
      fake: { replyAudio: tone(300) },
    });
    const fw = await boot(h);
    await turn(fw);
    await fw.dev.waitText('"type":"response.done"', 10_000);
    const first = h.fake.connections[0]!;
    await expect.poll(() => first.closed, { timeout: 6000 }).toBe(true);
    expect(fw.dev.closed).toBeNull();
    await turn(fw);
    await expect.poll(() => h!.fake.connections.length, { timeout: 5000 }).toBe(2);
    await fw.dev.waitText('"type":"response.done"', 10_000, fw.dev.frames.length - 1);
  });

  it("cancel drops the half-sentence: 1 s spoken, cancel, a 2.3 s question → one committed turn of the question alone", async () => {
    const committed: number[] = [];
    h = await rig.start({
      dialects: ["underzenith"],
      fake: {
        replyAudio: tone(300),
        transcribe: (pcm) => {
          committed.push(pcm.length);
          return "turn on the kitchen light";
        },
      },
    });
    const fw = await boot(h);
    fw.startTurn();
    await fw.mic.say(loud(1000, 24_000));
    fw.cancel();
    await sleep(200);
    const before = fw.sentBytes;
    fw.startTurn();
    await fw.mic.say(loud(2300, 24_000));
    while (fw.listening) await sleep(20);
    await fw.dev.waitText('"type":"response.done"', 10_000);
    // One turn, exactly the audio sent after the second ptt_start (the question and the quiet that ended it).
    expect(committed).toEqual([fw.sentBytes - before]);
    expect(committed[0]! / 48).toBeLessThan(2300 + 1500);
    expect(h.fake.connections[0]!.all("input_audio_buffer.clear").length).toBeGreaterThanOrEqual(1);
  });

  it("a new push-to-talk while the answer is still being asked for: that answer is cancelled and never plays", async () => {
    h = await rig.start({
      dialects: ["underzenith"],
      // A busy upstream: response.created comes 300 ms after response.create, after the new press.
      fake: { replyAudio: tone(800), audioSpeed: 8, responseCreatedDelayMs: 300 },
    });
    const fw = await boot(h);
    await turn(fw);
    const pressed = fw.dev.frames.length;
    fw.startTurn();
    await fw.mic.say(loud(1500, 24_000));
    while (fw.listening) await sleep(20);
    const released = fw.dev.frames.length;
    await fw.dev.waitText('"type":"response.done"', 10_000, released);
    await sleep(300);
    // Nothing of the first answer reached the device while the user asked again, nor after.
    expect(fw.dev.frames.slice(pressed, released).filter((f) => f.binary !== undefined)).toHaveLength(0);
    expect(fw.dev.texts().filter((t) => t.includes("response.created"))).toHaveLength(1);
    expect(fw.dev.audio().reduce((n, f) => n + f.binary!.length, 0)).toBe(38_400);
    // Upstream, the abandoned answer was cancelled by its id once it was created.
    const conn = h.fake.connections[0]!;
    expect(conn.all("response.cancel").some((e) => e.response_id !== undefined)).toBe(true);
    expect(conn.all("input_audio_buffer.commit")).toHaveLength(2);
  });
});
