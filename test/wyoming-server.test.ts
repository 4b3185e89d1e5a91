/**
 * The Wyoming TCP service on 127.0.0.1 with a client of our own that speaks like Home Assistant's:
 * `describe` → `info` in the shape Home Assistant's Wyoming integration reads, `ping` → `pong`,
 * unknown events skipped, every kind of bad input answered with `error` and a close while a parallel
 * good client is unaffected, `not_supported` before programs are registered, and the program seam
 * (routing, ordering, close once, turns and metrics) driven through Home Assistant's call sequences
 * against small recording programs.
 */
import { readFileSync } from "node:fs";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigSchema, VOICES, WYOMING_DEFAULT_LANGUAGES, type Config } from "../src/config/model.js";
import { createLogger } from "../src/log.js";
import { createMetrics, type Metrics } from "../src/metrics.js";
import { WyomingActivity } from "../src/wyoming/activity.js";
import { WyomingEvents, type AsrEvent, type HandleEvent, type TtsEvent } from "../src/wyoming/events.js";
import type {
  WyomingAsrProgram,
  WyomingCallContext,
  WyomingHandleProgram,
  WyomingTtsProgram,
} from "../src/wyoming/program.js";
import { AddressAllowList } from "../src/net/address.js";
import { WyomingServer, wyomingPeers } from "../src/wyoming/server.js";
import { until } from "./fake-realtime/helpers.js";
import {
  WyomingTestClient,
  chunkPcm,
  haDescribe,
  haHandle,
  haSttConcurrent,
  haSttLegacy,
  haTts,
  haTtsStreaming,
} from "./wyoming-client.js";

const silent = createLogger({ level: "fatal", destination: { write: () => undefined } });
const config = (wyoming: Record<string, unknown> = {}): Config =>
  ConfigSchema.parse({
    openai: { api_key: "sk-test" },
    listen: { host: "127.0.0.1" },
    wyoming: { port: 0, ...wyoming },
  });

/** The 16 kHz fixture speech, without its 44-byte WAV header. */
const SPEECH = readFileSync(new URL("./fixtures/audio/kitchen_light_16k.wav", import.meta.url)).subarray(44);

// ----- Home Assistant's reading of `info` (wyoming/info.py dataclasses, as HA's integration uses them)
const attribution = z.object({ name: z.string(), url: z.string() });
const artifact = {
  name: z.string().min(1),
  attribution,
  installed: z.boolean(),
  description: z.string().nullable(),
  version: z.string().nullable(),
};
const withLanguages = z.object({ ...artifact, languages: z.array(z.string()) });
const HaInfo = z.object({
  asr: z.array(
    z.object({
      ...artifact,
      models: z.array(withLanguages),
      supports_transcript_streaming: z.boolean(),
      requires_external_vad: z.boolean(),
    }),
  ),
  tts: z.array(
    z.object({
      ...artifact,
      voices: z.array(withLanguages.extend({ speakers: z.array(z.object({ name: z.string() })).nullable() })),
      supports_synthesize_streaming: z.boolean(),
    }),
  ),
  handle: z.array(
    z.object({
      ...artifact,
      models: z.array(withLanguages),
      supports_handled_streaming: z.boolean(),
      supports_home_control: z.boolean(),
    }),
  ),
  intent: z.array(z.unknown()),
  wake: z.array(z.unknown()),
  mic: z.array(z.unknown()),
  snd: z.array(z.unknown()),
});

// ----- Recording programs that answer like the real ones would, so the seam is exercised end to end.
interface Recorded {
  readonly events: string[];
  readonly closes: string[];
}

/** Transcribes to "<n> bytes"; with `earlyAfter` it answers once that many chunks arrived (own VAD). */
function asrProgram(rec: Recorded, earlyAfter?: number): WyomingAsrProgram {
  return {
    supportsTranscriptStreaming: false,
    open({ peer, turn }: WyomingCallContext) {
      let bytes = 0;
      let chunks = 0;
      let answered = false;
      const answer = async () => {
        answered = true;
        await peer.write(WyomingEvents.transcript({ text: `${bytes} bytes`, language: "en" }));
        turn.stage("transcript", 0.01);
        turn.finish("success");
      };
      return {
        async handle(e: AsrEvent) {
          rec.events.push(e.type);
          if (answered) return; // audio after the transcript is ignored quietly
          if (e.type === "audio-chunk") {
            bytes += e.audio.length;
            if (++chunks === earlyAfter) await answer();
          } else if (e.type === "audio-stop") await answer();
        },
        close: (reason: string) => void rec.closes.push(reason),
      };
    },
  };
}

function handleProgram(rec: Recorded): WyomingHandleProgram {
  return {
    open: ({ peer, turn }) => ({
      async handle(e: HandleEvent) {
        rec.events.push(`${e.type}:${e.context?.conversation_id ?? "-"}`);
        if (e.text === "explode") throw new Error("boom");
        await peer.write(WyomingEvents.handled({ text: `You said: ${e.text}` }));
        turn.finish("success");
      },
      close: (reason) => void rec.closes.push(reason),
    }),
  };
}

/** Speaks 24 kHz PCM16: 480 bytes per character, in 4800-byte chunks. */
function ttsProgram(rec: Recorded): WyomingTtsProgram {
  const fmt = { rate: 24000, width: 2, channels: 1 };
  return {
    supportsSynthesizeStreaming: true,
    open({ peer, turn }) {
      let streaming = false;
      let text = "";
      const speak = async (t: string) => {
        await peer.write(WyomingEvents.audioStart(fmt));
        const audio = Buffer.alloc(t.length * 480, 1);
        for (let i = 0; i < audio.length; i += 4800) {
          await peer.write(WyomingEvents.audioChunk(fmt, audio.subarray(i, i + 4800)));
          if (i === 0) turn.stage("first_audio", 0.005);
        }
        await peer.write(WyomingEvents.audioStop());
      };
      return {
        async handle(e: TtsEvent) {
          rec.events.push(e.type);
          if (e.type === "synthesize-start") streaming = true;
          else if (e.type === "synthesize-chunk") text += e.text;
          else if (e.type === "synthesize" && !streaming) {
            await speak(e.text);
            turn.finish("success");
          } else if (e.type === "synthesize-stop") {
            await speak(text);
            await peer.write(WyomingEvents.synthesizeStopped());
            turn.finish("success");
          }
        },
        close: (reason) => void rec.closes.push(reason),
      };
    },
  };
}

let server: WyomingServer;
let port: number;
let metrics: Metrics;
let rec: Recorded;

async function start(
  opts: {
    programs?: boolean;
    wyoming?: Record<string, unknown>;
    idleMs?: number;
    eventMs?: number;
    allowedPeers?: AddressAllowList;
  } = {},
): Promise<void> {
  metrics = createMetrics(new Registry(), { defaults: false });
  rec = { events: [], closes: [] };
  server = new WyomingServer({
    config: config(opts.wyoming),
    version: "9.8.7",
    logger: silent,
    activity: new WyomingActivity({ metrics }),
    ...(opts.idleMs === undefined ? {} : { idleMs: opts.idleMs }),
    ...(opts.eventMs === undefined ? {} : { eventMs: opts.eventMs }),
    ...(opts.allowedPeers === undefined ? {} : { allowedPeers: opts.allowedPeers }),
    ...(opts.programs === false
      ? {}
      : { programs: { asr: asrProgram(rec), handle: handleProgram(rec), tts: ttsProgram(rec) } }),
  });
  port = await server.listen();
}

afterEach(async () => {
  await server.close();
});

const counter = async (program: string, outcome: string): Promise<number> =>
  (await metrics.wyomingRequests.get()).values.find(
    (v) => v.labels.program === program && v.labels.outcome === outcome,
  )?.value ?? 0;

describe("describe → info", () => {
  beforeEach(() => start());

  it("announces the three programs in the shape Home Assistant reads", async () => {
    const info = await haDescribe(port);
    expect(info?.type).toBe("info");
    const data = HaInfo.parse(info!.data);
    const [asr] = data.asr;
    const [tts] = data.tts;
    const [handle] = data.handle;
    expect(asr).toMatchObject({
      name: "OpenVoice",
      installed: true,
      version: "9.8.7",
      requires_external_vad: false,
    });
    expect(asr!.models).toEqual([
      expect.objectContaining({
        name: "gpt-4o-mini-transcribe",
        installed: true,
        languages: [...WYOMING_DEFAULT_LANGUAGES],
      }),
    ]);
    expect(handle).toMatchObject({ installed: true, supports_home_control: true, version: "9.8.7" });
    expect(handle!.models[0]).toMatchObject({ name: "gpt-realtime", installed: true });
    expect(tts).toMatchObject({ installed: true, supports_synthesize_streaming: true });
    expect(tts!.voices.map((v) => v.name)).toEqual([...VOICES]);
    expect(
      tts!.voices.every((v) => v.installed && v.languages.length === WYOMING_DEFAULT_LANGUAGES.length),
    ).toBe(true);
    expect(tts!.voices.find((v) => v.name === "marin")?.description).toBe("Marin (configured voice)");
    // the big info travels in the data part, far from the 64 KiB header limit
    expect(info!.header.data).toBeUndefined();
    expect(Number(info!.header.data_length)).toBeGreaterThan(1000);
  });

  it("announces the configured languages and answers several describes on one connection", async () => {
    await server.close();
    await start({ wyoming: { languages: ["de", "pt-BR", "de"] } });
    const c = await WyomingTestClient.connect(port);
    await c.write("describe");
    await c.write("describe");
    const a = HaInfo.parse((await c.read())!.data);
    const b = HaInfo.parse((await c.read())!.data);
    expect(a.asr[0]!.models[0]!.languages).toEqual(["de", "pt-BR"]);
    expect(b.tts[0]!.voices[0]!.languages).toEqual(["de", "pt-BR"]);
    await c.close();
  });
});

describe("who may connect (Wyoming has no authentication)", () => {
  it("refuses a peer outside the allowed addresses with error forbidden and a close; program calls never start", async () => {
    await start({ allowedPeers: new AddressAllowList(["127.0.0.2", "192.168.1.0/24"]) });
    const c = await WyomingTestClient.connect(port);
    await c.write("describe").catch(() => undefined);
    const events = await c.readToClose();
    expect(events.map((e) => [e.type, e.data.code])).toEqual([["error", "forbidden"]]);
    expect(rec.events).toEqual([]);
    expect(server.activity.snapshot().connections).toBe(0);
  });

  it("accepts loopback by default, and Home Assistant's network only as an add-on", () => {
    const standalone = wyomingPeers(config(), false);
    expect(standalone.allows("127.0.0.1")).toBe(true);
    expect(standalone.allows("::1")).toBe(true);
    expect(standalone.allows("::ffff:127.0.0.1")).toBe(true);
    expect(standalone.allows("172.30.32.1")).toBe(false);
    expect(standalone.allows("192.168.1.50")).toBe(false);
    const addon = wyomingPeers(config(), true);
    expect(addon.allows("172.30.32.1")).toBe(true);
    expect(addon.allows("::ffff:172.30.33.7")).toBe(true);
    expect(addon.allows("172.30.34.1")).toBe(false);
    expect(addon.allows("192.168.1.50")).toBe(false);
    const listed = wyomingPeers(config({ allowed_addresses: ["192.168.1.0/24", "fd00::5"] }), false);
    expect(listed.allows("192.168.1.50")).toBe(true);
    expect(listed.allows("192.168.2.50")).toBe(false);
    expect(listed.allows("fd00::5")).toBe(true);
    expect(listed.allows(undefined)).toBe(false);
  });

  it("names a malformed wyoming.allowed_addresses entry", () => {
    const r = ConfigSchema.safeParse({
      openai: { api_key: "sk-test" },
      wyoming: { allowed_addresses: ["192.168.1.0/24", "homeassistant.local"] },
    });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(["wyoming", "allowed_addresses", 1]);
    expect(r.error?.issues[0]?.message).toContain("an IP address or a subnet");
  });
});

describe("the wire", () => {
  beforeEach(() => start());

  it("answers ping with pong and skips unknown event types", async () => {
    const c = await WyomingTestClient.connect(port);
    await c.write("run-satellite", { anything: [1, 2] });
    await c.write("pause-satellite");
    await c.write("ping", { text: "hello" });
    const pong = await c.read();
    expect(pong).toMatchObject({ type: "pong", data: { text: "hello" } });
    await c.write("describe");
    expect((await c.read())?.type).toBe("info");
    await c.close();
  });

  const BAD: [string, Buffer | string, string][] = [
    ["not JSON", "this is not json\n", "bad_header"],
    ["a header without a type", '{"data":{}}\n', "bad_header"],
    ["a header over 64 KiB", `{"type":"ping","data":{"text":"${"x".repeat(70_000)}`, "header_too_large"],
    ["data over 1 MiB", `{"type":"transcript","data_length":${1024 * 1024 + 1}}\n`, "data_too_large"],
    [
      "a payload over 1 MiB",
      `{"type":"audio-chunk","payload_length":${2 * 1024 * 1024}}\n`,
      "payload_too_large",
    ],
    ["a data part that is not an object", '{"type":"describe","data_length":4}\nnull', "bad_data"],
    ["a known event with invalid data", '{"type":"audio-start","data":{"rate":"fast"}}\n', "bad_event"],
  ];

  for (const [what, bytes, code] of BAD)
    it(`answers ${what} with error ${code} and a close, while a parallel client goes on`, async () => {
      const good = await WyomingTestClient.connect(port);
      await good.write("transcribe", { language: "en" });
      await good.write("audio-start", { rate: 16000, width: 2, channels: 1 });
      await good.write("audio-chunk", { rate: 16000, width: 2, channels: 1 }, SPEECH.subarray(0, 2048));

      const bad = await WyomingTestClient.connect(port);
      await bad.writeRaw(bytes);
      const events = await bad.readToClose();
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ type: "error", data: { code } });
      expect(String(events[0]!.data.text).length).toBeGreaterThan(5);
      await bad.closed;

      await good.write("audio-chunk", { rate: 16000, width: 2, channels: 1 }, SPEECH.subarray(2048, 4096));
      await good.write("audio-stop");
      expect(await good.readUntil(["transcript"])).toMatchObject({ data: { text: "4096 bytes" } });
      await good.close();
    });

  it("answers a connection that ends in the middle of an event with truncated", async () => {
    const c = await WyomingTestClient.connect(port);
    await c.writeRaw(
      '{"type":"audio-chunk","data":{"rate":16000,"width":2,"channels":1},"payload_length":100}\n',
    );
    await c.writeRaw(Buffer.alloc(40));
    c.end();
    const events = await c.readToClose();
    expect(events).toEqual([
      expect.objectContaining({ type: "error", data: expect.objectContaining({ code: "truncated" }) }),
    ]);
    expect(rec.closes).toEqual([]);
  });

  it("closes on its own side when a client that half-closed waits for nothing", async () => {
    const c = await WyomingTestClient.connect(port);
    await c.write("describe");
    c.end();
    const events = await c.readToClose();
    expect(events.map((e) => e.type)).toEqual(["info"]);
  });

  it("keeps counting connections right", async () => {
    const a = await WyomingTestClient.connect(port);
    const b = await WyomingTestClient.connect(port);
    await a.write("ping");
    await b.write("ping");
    await a.read();
    await b.read();
    expect(server.connections).toBe(2);
    expect(server.activity.snapshot()).toMatchObject({ listening: true, port, connections: 2 });
    expect((await metrics.wyomingConnections.get()).values[0]?.value).toBe(2);
    await a.close();
    await b.close();
    await expect.poll(() => server.connections).toBe(0);
    await expect.poll(async () => (await metrics.wyomingConnections.get()).values[0]?.value).toBe(0);
  });
});

describe("slow programs and idle clients", () => {
  it("a program that takes its time still gets every event in order (reading pauses and resumes)", async () => {
    await start();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const sizes: number[] = [];
    server.register({
      asr: {
        supportsTranscriptStreaming: false,
        open: ({ peer }) => ({
          async handle(e: AsrEvent) {
            if (e.type === "audio-start") await gate;
            if (e.type === "audio-chunk") sizes.push(e.audio.readUInt32LE(0));
            if (e.type === "audio-stop")
              await peer.write(WyomingEvents.transcript({ text: `${sizes.length}` }));
          },
          close: () => undefined,
        }),
      },
    });
    const c = await WyomingTestClient.connect(port);
    await c.write("transcribe");
    await c.write("audio-start", { rate: 16000, width: 2, channels: 1 });
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 120; i++) {
      const chunk = Buffer.alloc(64 * 1024);
      chunk.writeUInt32LE(i, 0);
      writes.push(c.write("audio-chunk", { rate: 16000, width: 2, channels: 1 }, chunk));
    }
    writes.push(c.write("audio-stop"));
    await new Promise((r) => setTimeout(r, 100));
    expect(sizes).toEqual([]);
    release();
    await Promise.all(writes);
    expect(await c.readUntil(["transcript"], 30_000)).toMatchObject({ data: { text: "120" } });
    expect(sizes).toEqual(Array.from({ length: 120 }, (_, i) => i));
    await c.close();
  });

  it("closes a connection that sends nothing, but never one with a call in progress", async () => {
    await start({ idleMs: 150 });
    const idle = await WyomingTestClient.connect(port);
    const busy = await WyomingTestClient.connect(port);
    await busy.write("transcribe", { language: "en" });
    await busy.write("audio-start", { rate: 16000, width: 2, channels: 1 });
    expect(await idle.readToClose()).toEqual([]);
    await new Promise((r) => setTimeout(r, 400));
    await busy.write("audio-stop");
    expect(await busy.readUntil(["transcript"])).toMatchObject({ data: { text: "0 bytes" } });
    await busy.close();
  });
});

describe("nobody hoards connections", () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Writes `bytes` one byte at a time, `everyMs` apart, until the socket closes; resolves then. */
  const trickle = async (c: WyomingTestClient, bytes: string, everyMs: number) => {
    for (const ch of bytes) {
      if (c.socket.destroyed || c.socket.writableEnded) return;
      await c.writeRaw(ch);
      await sleep(everyMs);
    }
  };

  it("a header line sent a byte at a time gets event_timeout, and its bytes never reset the idle clock", async () => {
    await start({ idleMs: 400, eventMs: 300 });
    const slow = await WyomingTestClient.connect(port);
    const line = JSON.stringify({ type: "describe" }) + "\n";
    void trickle(slow, line.repeat(4), 50);
    const events = await slow.readToClose(5000);
    expect(events.map((e) => [e.type, e.data.code])).toEqual([["error", "event_timeout"]]);
    expect(String(events[0]!.data.text)).toMatch(/did not arrive whole within 0.3 seconds/);
    // A generous event deadline: the idle clock still closes a client that never completes an event.
    await server.close();
    await start({ idleMs: 300, eventMs: 60_000 });
    const dribble = await WyomingTestClient.connect(port);
    const closed = dribble.readToClose(5000);
    void trickle(dribble, '{"type": "describe", "data": {"padding": "' + "x".repeat(100), 40);
    expect(await closed).toEqual([]);
  });

  it("closes a connection idle between calls, after its call was answered", async () => {
    await start({ idleMs: 300 });
    const c = await WyomingTestClient.connect(port);
    await c.write("transcript", { text: "hello", context: { conversation_id: "01HIDLE" } });
    expect(await c.readUntil(["handled"])).toMatchObject({ data: { text: "You said: hello" } });
    // Home Assistant would close now; this client keeps the socket and sends nothing.
    expect(await c.readToClose(5000)).toEqual([]);
  });

  it("caps connections per address with too_many_connections; another address is served meanwhile", async () => {
    await start({ wyoming: { max_connections_per_peer: 2 } });
    const held = [await WyomingTestClient.connect(port), await WyomingTestClient.connect(port)];
    const third = await WyomingTestClient.connect(port);
    const refused = await third.readToClose();
    expect(refused.map((e) => [e.type, e.data.code])).toEqual([["error", "too_many_connections"]]);
    expect(String(refused[0]!.data.text)).toMatch(/already holds 2 connections/);
    // Another peer (Home Assistant) describes and calls as usual.
    const other = await WyomingTestClient.connect(port, "127.0.0.1", "127.0.0.2");
    await other.write("describe");
    expect((await other.readUntil(["info"]))?.type).toBe("info");
    await other.write("transcript", { text: "still here", context: { conversation_id: "01HPEER" } });
    expect(await other.readUntil(["handled"])).toMatchObject({ data: { text: "You said: still here" } });
    await other.close();
    // One of the first address's connections ends: its next one is served again.
    await held[0]!.close();
    await until(() => server.connections === 1, 5000, "connection gone");
    const again = await WyomingTestClient.connect(port);
    await again.write("describe");
    expect((await again.readUntil(["info"]))?.type).toBe("info");
    await Promise.all([held[1]!.close(), again.close()]);
  });

  it("the service full: a new connection still answers describe, and refuses a program call in words", async () => {
    await start({ wyoming: { max_connections_per_peer: 1000 } });
    const held: WyomingTestClient[] = [];
    for (let i = 0; i < 128; i++) held.push(await WyomingTestClient.connect(port));
    await until(() => server.connections === 128, 5000, "all connected");
    const late = await WyomingTestClient.connect(port);
    await late.write("describe");
    expect((await late.readUntil(["info"], 5000))?.type).toBe("info");
    await late.write("transcript", { text: "hello", context: { conversation_id: "01HFULL" } });
    const e = await late.readUntil(["error", "handled"], 5000);
    expect(e?.data).toMatchObject({ code: "too_many_connections" });
    expect(String(e?.data.text)).toMatch(/128 connections, the most at once/);
    expect(rec.events).toEqual([]);
    await Promise.all([...held, late].map((c) => c.close()));
  });
});

describe("before programs are registered", () => {
  beforeEach(() => start({ programs: false }));

  it("announces no program and answers every program call with not_supported", async () => {
    const info = HaInfo.parse((await haDescribe(port))!.data);
    expect([info.asr, info.tts, info.handle]).toEqual([[], [], []]);

    const stt = await haSttLegacy(port, { language: "en", chunks: chunkPcm(SPEECH.subarray(0, 6400)) });
    expect(stt.text).toBeNull();
    expect(stt.error?.data.code).toBe("not_supported");
    const handled = await haHandle(port, { text: "hi", conversationId: "c1" });
    expect(handled.answer).toMatchObject({ type: "error", data: { code: "not_supported" } });
    const tts = await haTts(port, "Hello");
    expect(tts.audio).toBeNull();
    expect(tts.events[0]).toMatchObject({ type: "error", data: { code: "not_supported" } });
    for (const program of ["asr", "handle", "tts"]) expect(await counter(program, "not_supported")).toBe(1);

    server.register({ handle: handleProgram(rec) });
    const later = await haHandle(port, { text: "hi", conversationId: "c1" });
    expect(later.answer).toMatchObject({ type: "handled", data: { text: "You said: hi" } });
    expect(HaInfo.parse((await haDescribe(port))!.data).handle).toHaveLength(1);
  });
});

describe("the program seam, through Home Assistant's call sequences", () => {
  beforeEach(() => start());

  it("speech-to-text, legacy client: every audio event in order, the transcript after audio-stop", async () => {
    const chunks = chunkPcm(SPEECH);
    const r = await haSttLegacy(port, { language: "en", chunks });
    expect(r.text).toBe(`${SPEECH.length} bytes`);
    expect(rec.events).toEqual([
      "transcribe",
      "audio-start",
      ...chunks.map(() => "audio-chunk"),
      "audio-stop",
    ]);
    await expect.poll(() => rec.closes).toEqual(["closed by the client"]);
    expect(await counter("asr", "success")).toBe(1);
  });

  it("speech-to-text, concurrent client: a transcript before audio-stop ends the call early", async () => {
    server.register({ asr: asrProgram(rec, 5) });
    const chunks = chunkPcm(SPEECH);
    const r = await haSttConcurrent(port, { language: "en", chunks, intervalMs: 5 });
    expect(r.text).toBe(`${5 * 2048} bytes`);
    expect(r.chunksSent).toBeLessThan(chunks.length);
    await expect.poll(() => rec.closes).toEqual(["closed by the client"]);
    const turn = server.activity.snapshot().turns[0];
    expect(turn).toMatchObject({ program: "asr", outcome: "success", stages: { transcript: 10 } });
  });

  it("conversation: transcript with context on a fresh connection → handled", async () => {
    const r = await haHandle(port, {
      text: "turn on the light",
      conversationId: "01JCONV",
      deviceId: "dev1",
    });
    expect(r.answer).toMatchObject({ type: "handled", data: { text: "You said: turn on the light" } });
    expect(rec.events).toEqual(["transcript:01JCONV"]);
  });

  it("a program that throws: error internal and a close; the turn counts as an error", async () => {
    const r = await haHandle(port, { text: "explode", conversationId: "c" });
    expect(r.answer).toMatchObject({ type: "error", data: { code: "internal" } });
    expect(await counter("handle", "error")).toBe(1);
    expect(rec.closes).toEqual(["closed by the service"]);
  });

  it("a program that cannot open a call, or fails one with its own sentence: the client reads it, the turn is an error", async () => {
    server.register({
      tts: {
        supportsSynthesizeStreaming: false,
        open: () => {
          throw new Error("no session");
        },
      },
      handle: {
        open: ({ peer }) => ({
          handle: () => peer.fail("upstream_unavailable", "The assistant cannot be reached right now."),
          close: () => undefined,
        }),
      },
    });
    const tts = await haTts(port, "Hello");
    expect(tts.audio).toBeNull();
    expect(tts.events).toEqual([
      expect.objectContaining({ type: "error", data: expect.objectContaining({ code: "internal" }) }),
    ]);
    const r = await haHandle(port, { text: "hi", conversationId: "c" });
    expect(r.answer).toMatchObject({
      type: "error",
      data: { code: "upstream_unavailable", text: "The assistant cannot be reached right now." },
    });
    expect(await counter("tts", "error")).toBe(1);
    expect(await counter("handle", "error")).toBe(1);
    expect(await counter("handle", "abandoned")).toBe(0);
    expect((await haDescribe(port))?.type).toBe("info");
  });

  it("text-to-speech, plain and streaming: audio in one format, then synthesize-stopped", async () => {
    const plain = await haTts(port, "Hello there", "marin");
    expect(plain.format).toEqual({ rate: 24000, width: 2, channels: 1 });
    expect(plain.audio?.length).toBe(11 * 480);
    expect(plain.events.map((e) => e.type)).toEqual([
      "audio-start",
      "audio-chunk",
      "audio-chunk",
      "audio-stop",
    ]);

    rec.events.length = 0;
    const streamed = await haTtsStreaming(port, ["Hel", "lo ", "there"]);
    expect(streamed.stopped).toBe(true);
    expect(streamed.audio?.length).toBe(11 * 480);
    expect(streamed.events.at(-1)?.type).toBe("synthesize-stopped");
    expect(rec.events).toEqual([
      "synthesize-start",
      "synthesize-chunk",
      "synthesize-chunk",
      "synthesize-chunk",
      "synthesize",
      "synthesize-stop",
    ]);
    expect(await counter("tts", "success")).toBe(2);
    const stage = (await metrics.wyomingStageSeconds.get()).values.find(
      (v) => v.metricName === "openvoice_wyoming_stage_seconds_count" && v.labels.stage === "first_audio",
    );
    expect(stage?.value).toBe(2);
  });

  it("interleaved calls on parallel connections each get their own answer", async () => {
    const [a, b, t] = await Promise.all([
      haSttConcurrent(port, { language: "en", chunks: chunkPcm(SPEECH.subarray(0, 8192)), intervalMs: 3 }),
      haSttLegacy(port, { language: "en", chunks: chunkPcm(SPEECH.subarray(0, 4096)), intervalMs: 2 }),
      haTts(port, "ab"),
    ]);
    expect([a.text, b.text, t.audio?.length]).toEqual(["8192 bytes", "4096 bytes", 960]);
  });

  it("shutdown closes open calls once with reason shutdown and counts them abandoned", async () => {
    const c = await WyomingTestClient.connect(port);
    await c.write("transcribe", { language: "en" });
    await c.write("audio-start", { rate: 16000, width: 2, channels: 1 });
    await expect.poll(() => rec.events.length).toBe(2);
    await server.close();
    expect(await c.readToClose()).toEqual([]);
    expect(rec.closes).toEqual(["shutdown"]);
    expect(await counter("asr", "abandoned")).toBe(1);
    expect(server.activity.snapshot().listening).toBe(false);
  });
});
