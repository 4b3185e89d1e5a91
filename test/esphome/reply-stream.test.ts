/**
 * Reply streams over real HTTP on loopback: what an ESPHome media player sees when it fetches the URL.
 */
import { get, type IncomingMessage } from "node:http";
import { readFileSync } from "node:fs";
import Fastify, { type FastifyInstance } from "fastify";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MP3_SPEECH_BITRATE_KBPS } from "../../src/audio/mp3.js";
import { parseWav } from "../../src/audio/wav.js";
import {
  REPLY_PATH_PREFIX,
  ReplyStreams,
  ReplyUrlUnavailableError,
  type ReplyStreamsOptions,
} from "../../src/esphome/reply-stream.js";
import { createSatelliteServer } from "../../src/http/server.js";
import { mp3Frames } from "./mp3-frames.js";

const speech = parseWav(
  readFileSync(new URL("../fixtures/audio/living_room_24k_sox_vhq.wav", import.meta.url)),
);
const speechBytes = Buffer.from(speech.samples.buffer, speech.samples.byteOffset, speech.samples.byteLength);
const logger = pino({ level: "silent" });
const REPLY_BYTES_PER_S = 48_000;

interface Fetch {
  readonly res: IncomingMessage;
  readonly chunks: { at: number; bytes: Buffer }[];
  /** Resolves with the whole body when the response ends; rejects if it is cut. */
  readonly body: Promise<Buffer>;
  /** Resolves once `n` body bytes arrived. */
  bytes(n: number): Promise<void>;
  abort(): void;
}

/** GET `url` as a device does; optionally gives up after `idleTimeoutMs` without data (audio_reader.cpp). */
function fetchStream(url: string, idleTimeoutMs?: number): Promise<Fetch> {
  return new Promise((resolve, reject) => {
    const req = get(url, (res) => {
      const chunks: { at: number; bytes: Buffer }[] = [];
      const waiters: { n: number; resolve: () => void }[] = [];
      let total = 0;
      let idle: NodeJS.Timeout | undefined;
      const arm = () => {
        if (idleTimeoutMs === undefined) return;
        clearTimeout(idle);
        idle = setTimeout(() => res.destroy(new Error("read timeout: no data for 5 s")), idleTimeoutMs);
      };
      arm();
      const body = new Promise<Buffer>((ok, fail) => {
        res.on("data", (b: Buffer) => {
          arm();
          chunks.push({ at: performance.now(), bytes: b });
          total += b.length;
          for (const w of waiters.filter((w) => total >= w.n)) w.resolve();
        });
        res.on("end", () => {
          clearTimeout(idle);
          ok(Buffer.concat(chunks.map((c) => c.bytes)));
        });
        res.on("error", (e) => {
          clearTimeout(idle);
          fail(e);
        });
        res.on("close", () => clearTimeout(idle));
      });
      body.catch(() => undefined);
      resolve({
        res,
        chunks,
        body,
        bytes: (n) =>
          total >= n ? Promise.resolve() : new Promise<void>((r) => waiters.push({ n, resolve: r })),
        abort: () => req.destroy(),
      });
    });
    req.on("error", reject);
  });
}

async function status(url: string): Promise<number> {
  const f = await fetchStream(url);
  f.res.resume();
  return f.res.statusCode ?? 0;
}

describe("ReplyStreams", () => {
  let app: FastifyInstance;
  let base: string;
  let streams: ReplyStreams;

  async function start(o: Partial<ReplyStreamsOptions> = {}): Promise<void> {
    // The satellite port's own instance, as the service registers the plugin on it.
    app = createSatelliteServer({ logger, registry: new Registry(), readiness: () => ({ ready: true }) });
    streams = new ReplyStreams({ baseUrl: () => base, logger, ...o });
    await app.register(streams.plugin);
    await app.listen({ host: "127.0.0.1", port: 0 });
    const addr = app.server.address();
    base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  }
  beforeEach(async () => start());
  afterEach(async () => app.close());

  it("serves MP3 as audio/mpeg at a .mp3 URL with 128 random bits, and WAV as audio/wav", async () => {
    const mp3 = streams.open({ device: "kitchen", format: "mp3" });
    expect(mp3.url).toMatch(new RegExp(`^${base}${REPLY_PATH_PREFIX}[0-9a-f]{32}\\.mp3$`));
    mp3.write(speechBytes.subarray(0, 48_000));
    mp3.end();
    const m = await fetchStream(mp3.url);
    expect(m.res.statusCode).toBe(200);
    expect(m.res.headers["content-type"]).toBe("audio/mpeg");
    const frames = mp3Frames(await m.body);
    expect(frames.length).toBeGreaterThan(40);
    expect(frames.every((f) => f.sampleRate === 24000 && f.bitrateKbps === MP3_SPEECH_BITRATE_KBPS)).toBe(
      true,
    );
    expect(await mp3.done).toBe("complete");

    const wav = streams.open({ device: "kitchen", format: "wav" });
    expect(wav.url).toMatch(/\/[0-9a-f]{32}\.wav$/);
    expect(wav.url).not.toBe(mp3.url);
    wav.write(speechBytes.subarray(0, 48_000));
    wav.end();
    const w = await fetchStream(wav.url);
    expect(w.res.headers["content-type"]).toBe("audio/wav");
    const body = await w.body;
    // A streaming header: sizes unknown, even (ESPHome's decoder pads odd sizes in 32 bits).
    expect([body.readUInt32LE(4), body.readUInt32LE(40)]).toEqual([0xfffffffe, 0xfffffffe - 36]);
    const audio = parseWav(body);
    expect(audio.sampleRate).toBe(24000);
    expect(Buffer.from(audio.samples.buffer).equals(speechBytes.subarray(0, 48_000))).toBe(true);
  });

  it("is single use: a second GET, an unknown token and the wrong ending get 404", async () => {
    const s = streams.open({ device: "kitchen", format: "wav" });
    const first = await fetchStream(s.url);
    expect(first.res.statusCode).toBe(200);
    expect(await status(s.url)).toBe(404);
    expect(await status(s.url.replace(/\.wav$/, ".mp3"))).toBe(404);
    expect(await status(`${base}${REPLY_PATH_PREFIX}${"0".repeat(32)}.wav`)).toBe(404);
    const other = streams.open({ device: "kitchen", format: "wav" });
    expect(await status(other.url.replace(/\.wav$/, ".mp3"))).toBe(404);
    s.end();
    await first.body;
  });

  it("forgets a URL nobody fetched in time", async () => {
    await app.close();
    await start({ unfetchedTtlMs: 150 });
    const s = streams.open({ device: "kitchen", format: "mp3" });
    s.write(speechBytes.subarray(0, 9600));
    expect(await s.done).toBe("expired");
    expect(await status(s.url)).toBe(404);
    expect(streams.size).toBe(0);
  });

  it("keeps audio written before the device connects, then sends new audio at once, before end()", async () => {
    const s = streams.open({ device: "kitchen", format: "wav" });
    s.write(speechBytes.subarray(0, 24_000));
    expect(s.servedMs).toBe(0);
    const f = await fetchStream(s.url);
    await s.fetched;
    await f.bytes(44 + 24_000);
    s.write(speechBytes.subarray(24_000, 48_000));
    await f.bytes(44 + 48_000); // arrived while the stream is still open
    expect(f.res.complete).toBe(false);
    s.end();
    const audio = parseWav(await f.body);
    expect(Buffer.from(audio.samples.buffer).equals(speechBytes.subarray(0, 48_000))).toBe(true);
  });

  it("MP3: PCM written while the encoder loads is kept; frames flow before end()", async () => {
    const s = streams.open({ device: "kitchen", format: "mp3" });
    s.write(speechBytes.subarray(0, 96_000)); // 2 s, right after open
    const f = await fetchStream(s.url);
    await f.bytes(16_000); // most of a second at 160 kbit/s
    expect(f.res.complete).toBe(false);
    s.end();
    const frames = mp3Frames(await f.body);
    expect(frames.length * 576).toBeGreaterThanOrEqual(48_000);
  });

  it("hold(true) keeps a reader with a 5 s read timeout alive; without it the reader gives up", async () => {
    const held = streams.open({ device: "kitchen", format: "mp3" });
    const idle = streams.open({ device: "hall", format: "wav" });
    held.hold(true);
    held.write(speechBytes.subarray(0, 4800));
    idle.write(speechBytes.subarray(0, 4800));
    const [a, b] = await Promise.all([fetchStream(held.url, 5000), fetchStream(idle.url, 5000)]);
    await expect(b.body).rejects.toThrow(/read timeout/);
    await idle.closedEarly;
    expect(await idle.done).toBe("closed_early");
    await new Promise((r) => setTimeout(r, 1500));
    held.hold(false);
    held.end();
    const frames = mp3Frames(await a.body);
    expect(frames.length * 576).toBeGreaterThan(5 * 24_000); // silence filled the wait
    const gaps = a.chunks.slice(1).map((c, i) => c.at - a.chunks[i]!.at);
    expect(Math.max(...gaps)).toBeLessThan(5000);
    expect(held.writtenMs).toBeGreaterThan(5000);
  }, 20_000);

  it("sees the device close the stream early (the stop word) and reports what it took", async () => {
    const s = streams.open({ device: "kitchen", format: "wav" });
    s.write(speechBytes.subarray(0, 96_000)); // 2 s
    const f = await fetchStream(s.url);
    await f.bytes(44 + 96_000);
    expect(s.servedMs).toBeCloseTo(2000, 0);
    f.abort();
    await s.closedEarly;
    expect(await s.done).toBe("closed_early");
    s.write(speechBytes.subarray(0, 4800)); // ignored, no throw
    s.end();
    expect(s.servedMs).toBeLessThanOrEqual(2000);
  });

  it("servedMs after an early close counts what the device took, not what was still queued for it", async () => {
    const s = streams.open({ device: "kitchen", format: "wav" });
    const f = await fetchStream(s.url);
    await f.bytes(44);
    f.res.pause(); // the device's buffer is full: it stops reading
    const minute = Buffer.alloc(REPLY_BYTES_PER_S * 60);
    for (let i = 0; i < 3; i++) s.write(minute); // 3 minutes: far more than the sockets can hold
    await new Promise((r) => setTimeout(r, 300));
    const before = s.servedMs;
    f.abort(); // the stop word
    await s.closedEarly;
    expect(s.writtenMs).toBe(180_000);
    expect(s.servedMs).toBeGreaterThanOrEqual(before);
    expect(s.servedMs).toBeLessThan(90_000); // not the 180 s Node still held when the device hung up
  });

  it("servedMs follows what was handed to the device, in written time, for MP3 too", async () => {
    const s = streams.open({ device: "kitchen", format: "mp3" });
    s.write(speechBytes.subarray(0, 144_000)); // 3 s
    expect(s.writtenMs).toBe(3000);
    expect(s.servedMs).toBe(0);
    const f = await fetchStream(s.url);
    s.end();
    await f.body;
    expect(s.servedMs).toBeGreaterThan(2900);
    expect(s.servedMs).toBeLessThanOrEqual(3000);
  });

  it("ends open streams when the server closes, and refuses to open without a base URL", async () => {
    const s = streams.open({ device: "kitchen", format: "wav" });
    s.write(speechBytes.subarray(0, 4800));
    const f = await fetchStream(s.url);
    await f.bytes(44);
    await app.close();
    expect(await s.done).not.toBe("complete");
    await expect(f.body).rejects.toThrow();

    const none = new ReplyStreams({ baseUrl: () => null, logger });
    expect(() => none.open({ device: "kitchen", format: "wav" })).toThrow(ReplyUrlUnavailableError);
    app = Fastify(); // afterEach closes it
  });
});
