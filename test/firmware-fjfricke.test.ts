/**
 * Dialect `fjfricke` (`voice_assistant_websocket`) end to end: a scripted device that behaves like
 * the firmware → the firmware port → the real engine → the fake Realtime server. The device connects
 * with no header when its wake word fires and streams PCM16 24 kHz at once, in the 32 ms frames its
 * microphone callback yields, and keeps streaming until it stops; it reacts to text frames only by
 * the substrings `"type":"interrupt"` (stop the speaker) and `"type":"disconnect"` (stop, close,
 * and do not reconnect).
 */
import { describe, expect, it } from "vitest";
import { RuntimeState, STATE_FILE } from "../src/state/runtime-state.js";
import { FirmwareAccess } from "../src/satellite/firmware/access.js";
import { metricValue, silentLogger } from "./fake-realtime/helpers.js";
import { tone } from "./fake-realtime/server.js";
import {
  DeviceSocket,
  RefusedUpgrade,
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
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** 512 stereo 32-bit samples at 16 kHz, resampled by the firmware to 768 samples at 24 kHz. */
const FRAME_BYTES = 1536;

const rig = useFirmwareRig();
let h: FirmwareHarness | null = null;

/** The firmware's reaction to what it receives. */
interface Firmware {
  dev: DeviceSocket;
  mic: Mic;
  speakerStops: number;
  explicitDisconnect: boolean;
}

async function wake(harness: FirmwareHarness): Promise<Firmware> {
  const dev = await rig.device(harness.url("/"));
  const mic = rig.mic(dev, 24_000, FRAME_BYTES);
  const fw: Firmware = { dev, mic, speakerStops: 0, explicitDisconnect: false };
  dev.onFrame = (f) => {
    if (f.text === undefined) return;
    if (f.text.includes('"type":"interrupt"') || f.text.includes('"type": "interrupt"')) fw.speakerStops++;
    else if (f.text.includes('"type":"disconnect"') || f.text.includes('"type": "disconnect"')) {
      fw.explicitDisconnect = true;
      mic.stop();
      dev.ws.close(1000);
    }
  };
  mic.start();
  return fw;
}

describe("fjfricke: connect and refusals", () => {
  it("refuses an unlisted address with 403 before the upgrade, shows it, and lets it in once allowed (persisted)", async () => {
    h = await rig.start({ dialects: ["fjfricke"], devices: [{ id: "other", address: "::1" }] });
    const refused = await DeviceSocket.connect(h.url("/")).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RefusedUpgrade);
    expect((refused as RefusedUpgrade).status).toBe(403);
    expect(h.access.refused()).toMatchObject([{ address: "127.0.0.1", dialect: "fjfricke", attempts: 1 }]);
    expect(
      await metricValue(h.metrics, "openvoice_dialect_refusals_total", { dialect: "fjfricke", code: "403" }),
    ).toBe(1);

    const allowed = await h.access.allow("127.0.0.1");
    expect(allowed).toEqual({ id: "fjfricke-127.0.0.1", address: "127.0.0.1", dialect: "fjfricke" });
    expect(h.access.refused()).toEqual([]);
    const onDisk = JSON.parse(await readFile(join(h.dataDir, STATE_FILE), "utf8")) as Record<string, unknown>;
    expect(onDisk.allowed_devices).toEqual([allowed]);
    // After a restart the address is still known.
    const reloaded = new FirmwareAccess({
      devices: [],
      state: await RuntimeState.load(h.dataDir),
      logger: silentLogger(),
    });
    expect(reloaded.deviceAt("127.0.0.1")).toEqual({ id: "fjfricke-127.0.0.1" });

    const fw = await wake(h);
    await expect
      .poll(() => h!.registry.devices(), { timeout: 5000 })
      .toEqual([
        { clientId: "fjfricke-127.0.0.1", dialect: "fjfricke", state: expect.any(String) as string },
      ]);
    expect(fw.dev.closed).toBeNull();
    // The firmware pings every 20 s and drops the link after 10 s without a pong.
    const pong = new Promise<void>((resolve) => fw.dev.ws.once("pong", () => resolve()));
    fw.dev.ws.ping();
    await pong;
  });

  it("answers 404 on its paths while only another dialect is enabled", async () => {
    h = await rig.start({ dialects: ["underzenith"] });
    const refused = await DeviceSocket.connect(h.url("/")).catch((e: unknown) => e);
    expect((refused as RefusedUpgrade).status).toBe(404);
  });
});

describe("fjfricke: conversations", () => {
  it("a full turn: fixture speech up at 24 kHz unchanged, the reply down paced at real time in small frames", async () => {
    h = await rig.start({ dialects: ["fjfricke"], fake: { replyAudio: tone(1500), audioSpeed: 8 } });
    const fw = await wake(h);
    const speech = pcmOf(await fixture("kitchen_light_24k_sox_vhq.wav"));
    await fw.mic.say(speech);
    const conn = h.fake.connections[0]!;
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    // Everything the device said reached the upstream, byte for byte (24 kHz needs no resampling).
    const up = Buffer.concat(
      conn.received.flatMap((e) =>
        e.type === "input_audio_buffer.append" ? [Buffer.from(e.audio, "base64")] : [],
      ),
    );
    const at = up.indexOf(speech.subarray(0, 4800)); // the microphone streamed silence before the speech
    expect(at).toBeGreaterThanOrEqual(0);
    expect(up.subarray(at, at + speech.length).equals(speech)).toBe(true);
    await expect
      .poll(() => fw.dev.audio().reduce((n, f) => n + f.binary!.length, 0), { timeout: 10_000 })
      .toBe(72_000);
    const frames = fw.dev.audio();
    expect(framesFit(frames)).toBe(true);
    expect(maxLeadMs(frames, 24_000)).toBeLessThanOrEqual(300);
    expect(frames.at(-1)!.at - frames[0]!.at).toBeGreaterThan(1100); // 1.5 s less the lead: not dumped
    // Nothing but audio is needed by this firmware during a plain turn: no text it would misread.
    expect(fw.dev.texts()).toEqual([]);
    expect(await metricValue(h.metrics, "openvoice_satellites_by_dialect", { dialect: "fjfricke" })).toBe(1);
  });

  it("a tool call: the model's function call runs on the MCP side and the answer is spoken", async () => {
    h = await rig.start({ dialects: ["fjfricke"], fake: { replyAudio: tone(400) } });
    h.fake.script({ kind: "function_call", name: "HassTurnOn", arguments: '{"name":"kitchen light"}' });
    const fw = await wake(h);
    await fw.mic.say(pcmOf(await fixture("kitchen_light_24k_sox_vhq.wav")));
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    expect(h.tools.calls).toEqual([{ name: "HassTurnOn", args: '{"name":"kitchen light"}' }]);
  });

  it("barge-in: speech during the reply sends the compact interrupt, and no reply audio follows it", async () => {
    h = await rig.start({
      dialects: ["fjfricke"],
      fake: { replyAudio: tone(4000), audioSpeed: 8, vad: { speechMs: 60, silenceMs: 300 } },
    });
    const fw = await wake(h);
    await fw.mic.say(pcmOf(await fixture("kitchen_light_24k_sox_vhq.wav")));
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    await sleep(800);
    await fw.mic.say(loud(400, 24_000));
    fw.mic.stop(); // no end of speech follows, so no new reply: any audio after the interrupt is the old one
    const stop = await fw.dev.waitText('"type":"interrupt"', 5000);
    expect(stop.text).toBe('{"type":"interrupt"}');
    expect(fw.speakerStops).toBe(1);
    const conn = h.fake.connections[0]!;
    await expect
      .poll(() => conn.received.some((e) => e.type === "conversation.item.truncate"), { timeout: 3000 })
      .toBe(true);
    await sleep(300);
    const after = fw.dev.frames.slice(fw.dev.frames.indexOf(stop)).filter((f) => f.binary);
    expect(after).toHaveLength(0);
  });

  it("an interrupt from the device cancels the reply; the device hanging up ends the conversation", async () => {
    h = await rig.start({ dialects: ["fjfricke"], fake: { replyAudio: tone(4000), audioSpeed: 8 } });
    const fw = await wake(h);
    await fw.mic.say(pcmOf(await fixture("kitchen_light_24k_sox_vhq.wav")));
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    await sleep(300);
    fw.dev.sendText('{"type":"interrupt"}');
    const conn = h.fake.connections[0]!;
    await expect
      .poll(
        () =>
          conn.received.some((e) => e.type === "conversation.item.truncate" || e.type === "response.cancel"),
        { timeout: 3000 },
      )
      .toBe(true);
    await sleep(300);
    const n = fw.dev.audio().length;
    await sleep(300);
    expect(fw.dev.audio().length).toBe(n);
    // The firmware's stop(): it closes the socket; the conversation and its upstream session end.
    fw.mic.stop();
    fw.dev.ws.close(1000);
    await expect.poll(() => conn.closed, { timeout: 5000 }).toBe(true);
    await expect.poll(() => h!.registry.size, { timeout: 5000 }).toBe(0);
  });

  it("an upstream that refuses every session after a drop: disconnect with the reason in words, so the firmware stays idle", async () => {
    h = await rig.start({ dialects: ["fjfricke"], fake: { replyAudio: tone(300) } });
    const fw = await wake(h);
    await fw.mic.say(pcmOf(await fixture("kitchen_light_24k_sox_vhq.wav")));
    await fw.dev.waitFor((f) => f.binary !== undefined, 10_000);
    const from = fw.dev.frames.length;
    h.fake.fault("quota", { dropOpen: true });
    const bye = await fw.dev.waitText('"type":"disconnect"', 3000, from);
    expect(JSON.parse(bye.text!)).toEqual({
      type: "disconnect",
      message: "OpenAI quota exceeded",
      reason: "upstream_unavailable",
    });
    expect(fw.explicitDisconnect).toBe(true);
    await fw.dev.waitClose();
  });

  it("the end of a conversation: disconnect (compact) before the add-on closes, so the firmware stays idle", async () => {
    h = await rig.start({
      dialects: ["fjfricke"],
      conversationIdleS: 3,
      fake: { replyAudio: tone(300) },
    });
    const fw = await wake(h);
    await fw.mic.say(pcmOf(await fixture("kitchen_light_24k_sox_vhq.wav")));
    const bye = await fw.dev.waitText('"type":"disconnect"', 10_000);
    expect(JSON.parse(bye.text!)).toEqual({
      type: "disconnect",
      message: "conversation ended",
      reason: "idle",
    });
    expect(bye.text).not.toMatch(/[:,] /);
    expect(fw.explicitDisconnect).toBe(true);
    expect((await fw.dev.waitClose()).code).toBe(1000);
    expect(fw.dev.audio().length).toBeGreaterThan(0);
  });
});
