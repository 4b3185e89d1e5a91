import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { Resampler, resamplerMemoryBytes } from "../src/audio/resampler.js";
import { parseWav } from "../src/audio/wav.js";
import { AudioPipe } from "../src/satellite/media.js";
import { TestSatellite, startApp, tonePcm, type TestApp } from "./satellite-helpers.js";

const speech16 = parseWav(
  readFileSync(new URL("./fixtures/audio/living_room_16k.wav", import.meta.url)),
).samples;

describe("AudioPipe", () => {
  it("turns microphone frames at any byte offset into the resampler's samples", () => {
    const r = new Resampler({ inRate: 16000, outRate: 24000 });
    const pipe = new AudioPipe(16000, 24000);
    const wire = Buffer.alloc(speech16.byteLength + 1);
    Buffer.from(speech16.buffer, speech16.byteOffset, speech16.byteLength).copy(wire, 1);
    for (let at = 0; at + 320 <= speech16.length; at += 320) {
      const expected = Buffer.from(r.process(speech16.subarray(at, at + 320)).slice().buffer);
      const frame = wire.subarray(1 + 2 * at, 1 + 2 * (at + 320));
      expect(pipe.micToUpstream(frame).equals(expected)).toBe(true);
    }
  });

  it("hands its resamplers' memory back on dispose: connections come and go without growth", () => {
    const connection = (): void => {
      const pipe = new AudioPipe(16000, 16000);
      pipe.micToUpstream(Buffer.from(speech16.buffer, speech16.byteOffset, 640));
      pipe.upstreamToSpeaker(Buffer.alloc(960));
      pipe.flushSpeaker();
      pipe.dispose();
    };
    connection();
    const before = resamplerMemoryBytes();
    for (let i = 0; i < 5000; i++) connection();
    expect(resamplerMemoryBytes()).toBe(before);
  });

  it("passes 24 kHz microphone audio through", () => {
    const pipe = new AudioPipe(24000, 24000);
    const frame = Buffer.alloc(960, 7);
    expect(pipe.micToUpstream(frame)).toBe(frame);
  });
});

describe("satellite connections and resampler memory", () => {
  let app: TestApp | null = null;
  afterEach(async () => {
    await app?.close();
    app = null;
  });

  it("a closed connection hands its resamplers' memory back: connections in turn reuse it", async () => {
    app = await startApp();
    const connection = async (n: number): Promise<void> => {
      const sat = await TestSatellite.connect(app!.url);
      await sat.hello();
      sat.send({ type: "turn.start" });
      await sat.waitJson("state", (m) => m.value === "listening");
      const conv = await app!.source.nth(n);
      sat.sendAudio(tonePcm(100, 16000));
      await expect.poll(() => conv.appendedBytes()).toBeGreaterThan(0);
      conv.emit("response.start", { id: `r${String(n)}` });
      conv.emit("audio", { responseId: `r${String(n)}`, itemId: "i1", pcm: tonePcm(100, 24000) });
      await sat.waitFor((f) => f.binary !== undefined);
      sat.close();
      await expect.poll(() => app!.registry.size).toBe(0);
    };
    await connection(0);
    const before = resamplerMemoryBytes();
    // 12 connections holding two regions each would need more memory than the first one left.
    for (let n = 1; n <= 12; n++) await connection(n);
    expect(resamplerMemoryBytes()).toBe(before);
  });
});
