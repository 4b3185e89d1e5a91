/**
 * The ESPHome API client (src/esphome/api) against the device emulator (test/esphome/emulator), over
 * real TCP on 127.0.0.1; the media player's start rule against a small HTTP server on 127.0.0.1.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import pino from "pino";
import { createMp3Encoder } from "wasm-media-encoders";
import {
  DeviceConnectError,
  TimerEventType,
  VoiceEvent,
  VoiceFeature,
  connectDevice,
  connectFailure,
  probeVoiceOwner,
  type DeviceConnection,
  type VoiceRequest,
} from "../src/esphome/api/index.js";
import {
  LINUX_VOICE_ASSISTANT_FLAGS,
  VOICE_PE_FLAGS,
  startEmulatedDevice,
  type EmulatedDevice,
} from "./esphome/emulator/index.js";
import { streamingWavHeader, wavHeader } from "../src/audio/wav.js";
import { fileTypeOf, mp3Frames, wavInfo, type DecoderGeneration } from "./esphome/emulator/media-player.js";

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function device(o: Parameters<typeof startEmulatedDevice>[0] = {}): Promise<EmulatedDevice> {
  const d = await startEmulatedDevice(o);
  cleanups.push(() => d.close());
  return d;
}

async function connect(
  d: EmulatedDevice,
  o: { encryptionKey?: string; clientInfo?: string } = {},
): Promise<DeviceConnection> {
  const c = await connectDevice({
    host: d.host,
    port: d.port,
    clientInfo: o.clientInfo ?? "OpenVoice MCP",
    timeoutMs: 5000,
    logger,
    ...(o.encryptionKey ? { encryptionKey: o.encryptionKey } : {}),
  });
  cleanups.push(() => c.close());
  return c;
}

async function connectError(p: Promise<unknown>): Promise<DeviceConnectError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(DeviceConnectError);
    return err as DeviceConnectError;
  }
  throw new Error("connected, but a failure was expected");
}

const until = async (pred: () => boolean, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("connect", () => {
  it("connects without encryption and reads DeviceInfo", async () => {
    const d = await device({ name: "voice-pe-test", macAddress: "AA:BB:CC:DD:EE:FF" });
    const c = await connect(d);
    expect(c.info).toMatchObject({
      name: "voice-pe-test",
      macAddress: "AA:BB:CC:DD:EE:FF",
      voiceFeatures: 61,
    });
    expect(c.info.voiceFeatures & VoiceFeature.ANNOUNCE).toBeTruthy();
    expect(c.info.voiceFeatures & VoiceFeature.SPEAKER).toBe(0);
  });

  it("connects with Noise and reads the linux-voice-assistant flags", async () => {
    const key = randomBytes(32).toString("base64");
    const d = await device({ encryptionKey: key, featureFlags: LINUX_VOICE_ASSISTANT_FLAGS, name: "lva" });
    const c = await connect(d, { encryptionKey: key });
    expect(c.info.name).toBe("lva");
    expect(c.info.voiceFeatures).toBe(LINUX_VOICE_ASSISTANT_FLAGS);
    expect(VOICE_PE_FLAGS).toBe(61);
  });

  it("a wrong key is bad_key with words, and the key is not in them", async () => {
    const key = randomBytes(32).toString("base64");
    const wrong = randomBytes(32).toString("base64");
    const d = await device({ encryptionKey: key });
    const err = await connectError(connect(d, { encryptionKey: wrong }));
    expect(err.code).toBe("bad_key");
    expect(err.message).toBe("the encryption key does not match");
    expect(err.message).not.toContain(wrong);
  });

  it("never logs the key, even at trace level", async () => {
    const key = randomBytes(32).toString("base64");
    const lines: string[] = [];
    const traced = pino({ level: "trace" }, { write: (l: string) => lines.push(l) });
    const d = await device({ encryptionKey: key });
    const c = await connectDevice({
      host: d.host,
      port: d.port,
      clientInfo: "t",
      encryptionKey: key,
      logger: traced,
    });
    c.subscribeVoice(true);
    await probeVoiceOwner(c);
    c.close();
    await connectError(
      connectDevice({
        host: d.host,
        port: d.port,
        clientInfo: "t",
        encryptionKey: randomBytes(32).toString("base64"),
        logger: traced,
      }),
    );
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.join("\n")).not.toContain(key);
    expect(lines.join("\n")).not.toContain(Buffer.from(key, "base64").toString("hex"));
  });

  it("a missing key is key_required", async () => {
    const d = await device({ encryptionKey: randomBytes(32).toString("base64") });
    const err = await connectError(connect(d));
    expect(err.code).toBe("key_required");
    expect(err.message).toBe("the device needs an encryption key");
  });

  it("a malformed key is bad_key", async () => {
    const d = await device({ encryptionKey: randomBytes(32).toString("base64") });
    const err = await connectError(connect(d, { encryptionKey: "bm90LWEta2V5" }));
    expect(err.code).toBe("bad_key");
  });

  it("nothing listening is unreachable with the reason", async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const err = await connectError(
      connectDevice({ host: "127.0.0.1", port, clientInfo: "t", timeoutMs: 2000, logger }),
    );
    expect(err.code).toBe("unreachable");
    expect(err.message).toBe(`cannot reach 127.0.0.1:${port} (ECONNREFUSED)`);
  });

  it("a silent peer is a timeout", async () => {
    const held: net.Socket[] = [];
    const srv = net.createServer((s) => held.push(s));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    cleanups.push(() => {
      held.forEach((s) => s.destroy());
      return new Promise<void>((r) => srv.close(() => r()));
    });
    const port = (srv.address() as net.AddressInfo).port;
    const err = await connectError(
      connectDevice({ host: "127.0.0.1", port, clientInfo: "t", timeoutMs: 500, logger }),
    );
    expect(err.code).toBe("timeout");
  });

  it("maps library and socket errors without passing their text on", () => {
    const refused = Object.assign(new Error("x"), { code: "EHOSTUNREACH" });
    expect(connectFailure(new Error("wrapped", { cause: refused }), "h:1", 1000).message).toBe(
      "cannot reach h:1 (EHOSTUNREACH)",
    );
    const odd = connectFailure(
      Object.assign(new Error("psk=secret"), { name: "DecodingError" }),
      "h:1",
      1000,
    );
    expect(odd.code).toBe("protocol");
    expect(odd.message).not.toContain("secret");
  });

  it("loads esphome-client only on the first connect", async () => {
    const script = fileURLToPath(new URL("./esphome/lazy-import.mjs", import.meta.url));
    const api = fileURLToPath(new URL("../src/esphome/api/index.ts", import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", script, api]);
    expect(JSON.parse(stdout)).toEqual({ before: false, after: true });
  });

  it("close is emitted once, when the device goes away", async () => {
    const d = await device();
    const c = await connect(d);
    const closes: string[] = [];
    c.on("close", ({ reason }) => closes.push(reason));
    await d.close();
    await until(() => closes.length > 0);
    c.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(closes).toHaveLength(1);
  });
});

/** One streamed reply at a time, written by the test as it likes; the server stops with the test. */
interface ReplyServer {
  url(path: string): string;
  write(b: Buffer): void;
  end(): void;
  /** Resolves when the device has fetched the url. */
  fetched: Promise<void>;
  /** Resolves when the device closed the stream before its end. */
  closedEarly: Promise<void>;
}

async function replyServer(contentType: string | null): Promise<ReplyServer> {
  const queue: (Buffer | null)[] = [];
  let res: http.ServerResponse | null = null;
  let fetched!: () => void;
  let closedEarly!: () => void;
  const server = http.createServer((_req, r) => {
    res = r;
    r.writeHead(200, contentType ? { "content-type": contentType } : {});
    r.flushHeaders();
    r.on("close", () => {
      if (!r.writableEnded) closedEarly();
    });
    for (const b of queue.splice(0)) {
      if (b) r.write(b);
      else r.end();
    }
    fetched();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    write: (b) => (res ? res.write(b) : queue.push(b)),
    end: () => (res ? res.end() : queue.push(null)),
    fetched: new Promise((r) => (fetched = r)),
    closedEarly: new Promise((r) => (closedEarly = r)),
  };
}

/** A recognisable PCM16 ramp: sample i is i (mod 2^16), so any frame says where it came from. */
function ramp(samples: number, from = 0): Buffer {
  const b = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) b.writeUInt16LE((from + i) & 0xffff, i * 2);
  return b;
}

async function mp3(ms: number, sampleRate: 16000 | 24000 = 16000): Promise<Buffer> {
  const enc = await createMp3Encoder();
  enc.configure({ sampleRate, channels: 1, bitrate: 128 });
  const n = (sampleRate * ms) / 1000;
  const f = new Float32Array(n).map((_, i) => Math.sin(i / 7) * 0.3);
  return Buffer.concat([Buffer.from(enc.encode([f])), Buffer.from(enc.finalize())]);
}

/** Subscribes and waits until the device names this connection as its voice owner. */
async function owned(d: EmulatedDevice, o: { clientInfo?: string } = {}): Promise<DeviceConnection> {
  const c = await connect(d, o);
  c.subscribeVoice(true);
  await until(() => d.voiceOwner === (o.clientInfo ?? "OpenVoice MCP"));
  return c;
}

/** Plays Home Assistant's side of a run, as `assist_satellite.py` orders the events. */
function answerRuns(
  c: DeviceConnection,
  replies: { url: string; serve: () => void }[],
  o: { respondAfterMs?: number } = {},
): { requests: VoiceRequest[]; frames: Buffer[] } {
  let reply = replies[0]!;
  const requests: VoiceRequest[] = [];
  const frames: Buffer[] = [];
  let listening = false;
  let heard = 0;
  c.on("voice.request", (r) => {
    requests.push(r);
    if (!r.start) return;
    reply = replies[requests.filter((q) => q.start).length - 1] ?? reply;
    listening = true;
    heard = 0;
    setTimeout(() => c.respondToRequest({ port: 0 }), o.respondAfterMs ?? 0);
    c.sendVoiceEvent(VoiceEvent.RUN_START, { url: reply.url });
  });
  c.on("voice.audio", ({ pcm }) => {
    frames.push(pcm);
    heard += pcm.length;
    if (!listening || heard < 32_000) return;
    listening = false;
    c.sendVoiceEvent(VoiceEvent.STT_VAD_START);
    c.sendVoiceEvent(VoiceEvent.STT_VAD_END);
    c.sendVoiceEvent(VoiceEvent.STT_END, { text: "turn on the kitchen light" });
    c.sendVoiceEvent(VoiceEvent.INTENT_START);
    c.sendVoiceEvent(VoiceEvent.INTENT_PROGRESS, { tts_start_streaming: "1" });
    reply.serve();
    c.sendVoiceEvent(VoiceEvent.INTENT_END, {
      conversation_id: "conv-1",
      continue_conversation: "0",
    });
    c.sendVoiceEvent(VoiceEvent.TTS_START, { text: "Done." });
    c.sendVoiceEvent(VoiceEvent.TTS_END, { url: reply.url });
    c.sendVoiceEvent(VoiceEvent.RUN_END);
  });
  return { requests, frames };
}

/** Answers each run at once: the device stops listening and streams the reply `serve` writes. */
function streamAtOnce(c: DeviceConnection, reply: ReplyServer, serve: () => void): void {
  c.on("voice.request", (r) => {
    if (!r.start) return;
    c.respondToRequest({ port: 0 });
    c.sendVoiceEvent(VoiceEvent.RUN_START, { url: reply.url("/r.wav") });
    c.sendVoiceEvent(VoiceEvent.STT_VAD_END);
    c.sendVoiceEvent(VoiceEvent.INTENT_PROGRESS, { tts_start_streaming: "1" });
    serve();
  });
}

describe("voice assistant", () => {
  it("runs a turn: request, microphone frames from the ring, events, the reply played, AnnounceFinished", async () => {
    const d = await device();
    const c = await owned(d);
    const reply = await replyServer("audio/wav");
    const pcm = ramp(16000 * 2, 7); // 2 s at 16 kHz
    const finished: boolean[] = [];
    c.on("voice.announce_finished", ({ success }) => finished.push(success));
    const second = await replyServer("audio/wav");
    const { requests, frames } = answerRuns(c, [
      {
        url: reply.url("/reply.wav"),
        serve: () => {
          reply.write(wavHeader(16000, pcm.length));
          reply.write(pcm);
          reply.end();
        },
      },
      { url: second.url("/2.wav"), serve: () => (second.write(wavHeader(16000, 0)), second.end()) },
    ]);
    const speech = ramp(16000);
    const run = await d.wake(speech);

    expect(requests[0]).toMatchObject({
      start: true,
      flags: 1,
      wakeWordPhrase: "Okay Nabu",
      conversationId: "",
      audioSettings: { noiseSuppressionLevel: 0, autoGain: 0, volumeMultiplier: 1 },
    });
    expect(frames.every((f) => f.length === 1024)).toBe(true);
    expect(Buffer.concat(frames).subarray(0, speech.length).equals(speech)).toBe(true);
    expect(run.events.map((e) => e.type)).toEqual([1, 11, 12, 4, 5, 100, 6, 7, 8, 2]);
    expect(run.speechEndAt).toBeGreaterThan(0);
    expect(run.firstSoundAt).not.toBeNull();
    expect(run.contentType).toBe("audio/wav");
    expect(run.replyBytes.equals(pcm)).toBe(true);
    expect(run.playedMs).toBeCloseTo(2000, 0);
    expect(finished).toEqual([true]);
    expect(d.state).toBe("IDLE");

    // INTENT_END's conversation_id comes back on the next request.
    const again = d.wake(ramp(16000));
    await until(() => requests.length === 2);
    expect(requests[1]?.conversationId).toBe("conv-1");
    await again;
  });

  it("keeps only 512 ms before the response: a late answer loses the start of the speech", async () => {
    const d = await device();
    const c = await owned(d);
    const reply = await replyServer("audio/wav");
    const { frames } = answerRuns(
      c,
      [
        {
          url: reply.url("/r.wav"),
          serve: () => (reply.write(wavHeader(16000, 3200)), reply.write(Buffer.alloc(3200)), reply.end()),
        },
      ],
      { respondAfterMs: 800 },
    );
    const speech = ramp(16000 * 2);
    await d.wake(speech);
    const first = frames[0]!;
    const offset = speech.indexOf(first);
    // What came more than 512 ms before the answer is gone (timers may fire up to one 1024-byte mic frame early).
    expect(offset).toBeGreaterThanOrEqual((800 - 512) * 32 - 1024);
    const got = Buffer.concat(frames);
    expect(got.length).toBeGreaterThanOrEqual(32_000);
    expect(got.equals(speech.subarray(offset, offset + got.length))).toBe(true);
  });

  it("with continue_conversation listens again by itself with the same conversation id", async () => {
    const d = await device();
    const c = await owned(d);
    let served = 0;
    const replies = [await replyServer("audio/wav"), await replyServer("audio/wav")];
    const urls = replies.map((r) => r.url("/r.wav"));
    let turn = 0;
    const serveNext = (): void => {
      const r = replies[served++]!;
      r.write(wavHeader(16000, 6400));
      r.write(Buffer.alloc(6400));
      r.end();
    };
    const requests: VoiceRequest[] = [];
    c.on("voice.request", (r) => {
      requests.push(r);
      if (!r.start) return;
      const t = turn++;
      c.respondToRequest({ port: 0 });
      c.sendVoiceEvent(VoiceEvent.RUN_START, { url: urls[t]! });
      setTimeout(() => {
        c.sendVoiceEvent(VoiceEvent.STT_VAD_END);
        c.sendVoiceEvent(VoiceEvent.STT_END, { text: t === 0 ? "set a timer" : "five minutes" });
        c.sendVoiceEvent(VoiceEvent.INTENT_PROGRESS, { tts_start_streaming: "1" });
        serveNext();
        c.sendVoiceEvent(VoiceEvent.INTENT_END, {
          conversation_id: "c-7",
          continue_conversation: t === 0 ? "1" : "0",
        });
        c.sendVoiceEvent(VoiceEvent.TTS_END, { url: urls[t]! });
        c.sendVoiceEvent(VoiceEvent.RUN_END);
      }, 100);
    });
    const run = await d.wake(ramp(3200), { followUp: ramp(3200, 99) });
    expect(requests.map((r) => [r.start, r.conversationId])).toEqual([
      [true, ""],
      [true, "c-7"],
    ]);
    expect(run.followUps).toHaveLength(1);
    expect(run.followUps[0]?.events.map((e) => e.type)).toEqual([1, 12, 4, 100, 6, 8, 2]);
    expect(d.state).toBe("IDLE");
  });

  it("an ERROR event stops the run: the device sends start=false and idles", async () => {
    const d = await device();
    const c = await owned(d);
    const requests: VoiceRequest[] = [];
    c.on("voice.request", (r) => {
      requests.push(r);
      if (r.start) {
        c.respondToRequest({ port: 0 });
        c.sendVoiceEvent(VoiceEvent.ERROR, {
          code: "upstream_unavailable",
          message: "OpenAI cannot be reached",
        });
      }
    });
    const run = await d.wake(ramp(3200));
    expect(run.error).toEqual({ code: "upstream_unavailable", message: "OpenAI cannot be reached" });
    await until(() => requests.length === 2);
    expect(requests[1]?.start).toBe(false);
    expect(d.state).toBe("IDLE");
  });

  it("a run nobody answers ends at the emulator's listen limit with start=false", async () => {
    const d = await device({ maxListenMs: 300 });
    const c = await owned(d);
    const requests: VoiceRequest[] = [];
    c.on("voice.request", (r) => requests.push(r));
    const run = await d.wake(ramp(3200));
    expect(run.error?.code).toBe("emulator-listen-timeout");
    await until(() => requests.length === 2);
    expect(requests.map((r) => r.start)).toEqual([true, false]);
  });

  it("a refused request ({error: true}) idles the device", async () => {
    const d = await device();
    const c = await owned(d);
    c.on("voice.request", (r) => r.start && c.respondToRequest({ error: true }));
    const run = await d.wake(ramp(3200));
    expect(run.events).toEqual([]);
    expect(d.state).toBe("IDLE");
  });

  it("a TTS_END after AnnounceFinished wedges the device in STREAMING_RESPONSE (DESIGN §11)", async () => {
    const d = await device();
    const c = await owned(d);
    const reply = await replyServer("audio/wav");
    streamAtOnce(c, reply, () => {
      reply.write(wavHeader(16000, 3200));
      reply.write(Buffer.alloc(3200));
      reply.end();
    });
    const finished = once(c, "voice.announce_finished");
    await d.wake(ramp(3200));
    await finished;
    c.sendVoiceEvent(VoiceEvent.INTENT_END, { conversation_id: "x" });
    c.sendVoiceEvent(VoiceEvent.TTS_END, { url: reply.url("/r.wav") });
    await until(() => d.state === "STREAMING_RESPONSE");
    // A wake word now only stops (voice_assistant.stop): no new run starts.
    void d.wake(ramp(3200));
    await new Promise((r) => setTimeout(r, 100));
    expect(d.state).toBe("STREAMING_RESPONSE");
  });

  it("the stop word closes the reply stream; AnnounceFinished follows with success", async () => {
    const d = await device();
    const c = await owned(d);
    const reply = await replyServer("audio/wav");
    streamAtOnce(c, reply, () => {
      reply.write(streamingWavHeader(16000));
      reply.write(Buffer.alloc(32000 * 3)); // 3 s, and the stream stays open
    });
    d.mediaPlayer.once("sound", () => setTimeout(() => d.stopWord(), 200));
    const finished = once(c, "voice.announce_finished");
    const run = await d.wake(ramp(3200));
    await reply.closedEarly;
    expect(await finished).toEqual([{ success: true }]);
    expect(run.playedMs).toBeGreaterThan(100);
    expect(run.playedMs).toBeLessThan(3000);
  });
});

describe("ownership", () => {
  it("serves one subscriber: a second client's subscribe is dropped", async () => {
    const d = await device();
    const other = await d.connectAsOtherClient();
    cleanups.push(() => other.close());
    expect(d.voiceOwner).toBe("Home Assistant 2026.9.0");
    const c = await connect(d);
    c.subscribeVoice(true);
    const requests: VoiceRequest[] = [];
    c.on("voice.request", (r) => requests.push(r));
    expect(await probeVoiceOwner(c, { deviceHasWakeWords: true })).toBe("other");
    expect(d.voiceOwner).toBe("Home Assistant 2026.9.0");
    void d.wake(ramp(3200)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));
    expect(requests).toEqual([]);

    // Home Assistant lets go (entity disabled): our next subscribe is served.
    other.subscribe(false);
    await until(() => d.voiceOwner === null);
    c.subscribeVoice(true);
    await until(() => d.voiceOwner === "OpenVoice MCP");
    expect(await probeVoiceOwner(c)).toBe("openvoice");
  });

  it("probeVoiceOwner: openvoice when owned; other once wake words are known; unknown when it cannot tell", async () => {
    const d = await device();
    const mine = await owned(d);
    expect(await probeVoiceOwner(mine)).toBe("openvoice");
    const second = await connect(d, { clientInfo: "second" });
    second.subscribeVoice(true);
    expect(await probeVoiceOwner(second)).toBe("unknown");
    expect(await probeVoiceOwner(second, { deviceHasWakeWords: true })).toBe("other");
    const config = await mine.voiceConfiguration();
    expect(config.available.map((w) => w.id)).toEqual(["okay_nabu", "hey_jarvis", "hey_mycroft"]);
    expect(config.active).toEqual(["okay_nabu"]);

    // Without wake words the owner's answer is empty too: unknown.
    const bare = await device({ wakeWords: [] });
    const owner = await owned(bare);
    expect(await probeVoiceOwner(owner)).toBe("unknown");

    // A closed connection cannot tell.
    mine.close();
    expect(await probeVoiceOwner(mine)).toBe("unknown");
  });

  it("the owner going away frees the voice assistant", async () => {
    const d = await device();
    const c = await owned(d);
    c.close();
    await until(() => d.voiceOwner === null);
  });
});

describe("announcements and timers", () => {
  it("announce plays media_id and AnnounceFinished follows", async () => {
    const d = await device();
    const c = await owned(d);
    const reply = await replyServer("audio/mpeg");
    const audio = await mp3(1000);
    reply.write(audio);
    reply.end();
    const finished = once(c, "voice.announce_finished");
    c.announce({ mediaId: reply.url("/a.mp3"), text: "The laundry is done." });
    expect(await finished).toEqual([{ success: true }]);
    await d.idle();
    const a = d.announcements[0]!;
    expect(a.text).toBe("The laundry is done.");
    expect(a.record.replyBytes.equals(audio)).toBe(true);
    expect(a.record.playedMs).toBeGreaterThan(900);
  });

  it("an announcement from a connection that does not own the voice assistant is dropped", async () => {
    const d = await device();
    await owned(d);
    const second = await connect(d, { clientInfo: "second" });
    const reply = await replyServer("audio/mpeg");
    const finished: unknown[] = [];
    second.on("voice.announce_finished", (f) => finished.push(f));
    second.announce({ mediaId: reply.url("/a.mp3"), text: "hello" });
    await probeVoiceOwner(second); // a round trip after the announce
    await new Promise((r) => setTimeout(r, 100));
    expect(d.announcements).toEqual([]);
    expect(finished).toEqual([]);
  });

  it("timer events are recorded in order", async () => {
    const d = await device();
    const c = await owned(d);
    const base = { timerId: "t1", name: "pasta", totalSeconds: 600, isActive: true };
    c.sendTimerEvent({ ...base, type: TimerEventType.STARTED, secondsLeft: 600 });
    c.sendTimerEvent({ ...base, type: TimerEventType.UPDATED, secondsLeft: 300, isActive: false });
    c.sendTimerEvent({ ...base, type: TimerEventType.FINISHED, secondsLeft: 0 });
    await until(() => d.timerEvents.length === 3);
    expect(d.timerEvents).toEqual([
      { ...base, type: 0, secondsLeft: 600 },
      { ...base, type: 1, secondsLeft: 300, isActive: false },
      { ...base, type: 3, secondsLeft: 0 },
    ]);
  });
});

describe("media player start rule", () => {
  async function announceAndStream(
    contentType: string | null,
    path: string,
    decoderGeneration?: DecoderGeneration,
  ) {
    const d = await device(decoderGeneration ? { decoderGeneration } : {});
    const c = await owned(d);
    const reply = await replyServer(contentType);
    const sounds: { receivedBytes: number; heldByDecoder: number; at: number }[] = [];
    d.mediaPlayer.on("sound", (s) => sounds.push(s));
    c.announce({ mediaId: reply.url(path), text: "" });
    await reply.fetched;
    return { d, c, reply, sounds };
  }

  it("WAV (24 kHz mono): the first sound needs 1 s of audio plus the decoder's 24 KiB", async () => {
    const { reply, sounds } = await announceAndStream("audio/wav", "/r?x=1");
    const header = streamingWavHeader(24000);
    const needed = header.length + 48000 + 24 * 1024;
    reply.write(header);
    reply.write(Buffer.alloc(needed - header.length - 512));
    await new Promise((r) => setTimeout(r, 300));
    expect(sounds).toEqual([]);
    reply.write(Buffer.alloc(1024));
    await until(() => sounds.length === 1);
    expect(sounds[0]!.receivedBytes).toBeGreaterThanOrEqual(needed);
    expect(sounds[0]!.heldByDecoder).toBe(header.length + 24 * 1024);
    reply.end();
  });

  /** Streams a 16 kHz 128 kbit/s MP3 at about twice real time (1 KiB every 30 ms) until the first sound. */
  async function mp3FirstSound(decoderGeneration?: DecoderGeneration) {
    const audio = await mp3(4000);
    const frames = mp3Frames(audio);
    expect(frames && "frames" in frames && frames.frames.every((f) => f.size === 576)).toBe(true);
    const { reply, sounds } = await announceAndStream("audio/mpeg", "/r", decoderGeneration);
    for (let at = 0; at < audio.length && sounds.length === 0; at += 1024) {
      reply.write(audio.subarray(at, at + 1024));
      await new Promise((r) => setTimeout(r, 30));
    }
    await until(() => sounds.length === 1);
    reply.end();
    return sounds[0]!;
  }

  it("MP3 (16 kHz, 128 kbps): the paused decoder holds its first fill and one frame, then 1 s ÷ 8 must be in the ring", async () => {
    const first = await mp3FirstSound();
    // Its output buffer has room for one frame only, so it stopped pulling once a whole frame was in:
    // what had come by then (1 KiB writes; a frame is 576 bytes).
    expect(first.heldByDecoder).toBeGreaterThanOrEqual(576);
    expect(first.heldByDecoder).toBeLessThanOrEqual(3 * 1024);
    expect(first.receivedBytes - first.heldByDecoder).toBeGreaterThanOrEqual(32000 / 8);
  });

  it("MP3 with the 2024 decoder: it takes what fits its 24 KiB input and output first", async () => {
    const first = await mp3FirstSound("2024");
    // 18 frames of 1152 bytes leave less than the 4608 bytes a frame needs; 17 refills came before.
    expect(first.heldByDecoder).toBeGreaterThanOrEqual(17 * 576);
    expect(first.heldByDecoder).toBeLessThanOrEqual(24 * 1024 + 17 * 576);
    expect(first.receivedBytes - first.heldByDecoder).toBeGreaterThanOrEqual(32000 / 8);
  });

  it("a short stream plays once it ends, below the start rule's count", async () => {
    const { c, reply, sounds } = await announceAndStream("audio/wav", "/r");
    const finished = once(c, "voice.announce_finished");
    reply.write(wavHeader(16000, 3200));
    reply.write(Buffer.alloc(3200));
    await new Promise((r) => setTimeout(r, 200));
    expect(sounds).toEqual([]);
    reply.end();
    await finished;
    expect(sounds).toHaveLength(1);
  });

  it("gives up after 5 s without data and drops what it buffered", async () => {
    const { d, c, reply, sounds } = await announceAndStream("audio/wav", "/r");
    const finished = once(c, "voice.announce_finished");
    reply.write(streamingWavHeader(16000));
    reply.write(Buffer.alloc(8000));
    const lastWrite = performance.now();
    await finished;
    expect(performance.now() - lastWrite).toBeGreaterThanOrEqual(4900);
    await d.idle();
    expect(sounds).toEqual([]);
    expect(d.announcements[0]?.record.playbackError).toBe("read timeout");
    expect(d.announcements[0]?.record.playedMs).toBe(0);
  }, 15_000);

  it("chooses the format by the exact Content-Type, else by the url's ending", () => {
    expect(fileTypeOf("audio/mpeg", "http://h/r")).toBe("mp3");
    expect(fileTypeOf("audio/wav", "http://h/r.mp3")).toBe("wav");
    expect(fileTypeOf("audio/x-wav", "http://h/r.wav?t=1")).toBeNull();
    expect(fileTypeOf("audio/x-wav", "http://h/r.wav")).toBe("wav");
    expect(fileTypeOf(undefined, "http://h/r.flac")).toBe("flac");
    expect(fileTypeOf("Audio/MPEG", "http://h/r")).toBe("mp3");
    expect(fileTypeOf("audio/mpeg; charset=binary", "http://h/R.WAV")).toBe("wav");
    expect(wavInfo(Buffer.from("RIFF\0\0\0\0WAVE"))).toBeNull();
    expect(wavInfo(Buffer.from("RIFX\0\0\0\0WAVE"))).toEqual({ error: "not a WAV file" });
  });
});
