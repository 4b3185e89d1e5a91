import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  MP3_ENCODER_DELAY_SAMPLES,
  MP3_SAMPLES_PER_FRAME,
  MP3_SPEECH_BITRATE_KBPS,
  Mp3EncoderNotReadyError,
  Mp3StreamEncoder,
  type Mp3SampleRate,
} from "../../src/audio/mp3.js";
import { parseWav } from "../../src/audio/wav.js";
import { mp3Frames } from "./mp3-frames.js";

const speech24k = parseWav(
  readFileSync(new URL("../fixtures/audio/living_room_24k_sox_vhq.wav", import.meta.url)),
);
const speech16k = parseWav(readFileSync(new URL("../fixtures/audio/living_room_16k.wav", import.meta.url)));
const bytesOf = (s: Int16Array): Buffer => Buffer.from(s.buffer, s.byteOffset, s.byteLength);

/** Encodes `pcm` in chunks of `chunk` bytes (odd sizes on purpose) and flushes. */
async function encodeAll(pcm: Buffer, o: { sampleRate: Mp3SampleRate; bitrateKbps: number }, chunk = 961) {
  const enc = new Mp3StreamEncoder(o);
  await enc.ready;
  const parts: Buffer[] = [];
  for (let i = 0; i < pcm.length; i += chunk) parts.push(enc.encode(pcm.subarray(i, i + chunk)));
  parts.push(enc.flush());
  return Buffer.concat(parts);
}

/**
 * LAME starts with its 576-sample encoder delay and ends with at least the decoder's 529-sample delay as
 * padding (1105 in all, MP3_ENCODER_DELAY_SAMPLES), rounded to whole frames: after the two frames that
 * costs at least, the stream is at most one frame longer than its input.
 */
function expectDurationMatches(mp3: Buffer, inputSamples: number): void {
  const frames = mp3Frames(mp3);
  const overhead = 2 * MP3_SAMPLES_PER_FRAME;
  expect(overhead).toBeGreaterThan(MP3_ENCODER_DELAY_SAMPLES);
  const decoded = frames.reduce((n, f) => n + f.samples, 0) - overhead;
  expect(decoded).toBeGreaterThanOrEqual(inputSamples);
  expect(decoded - inputSamples).toBeLessThan(MP3_SAMPLES_PER_FRAME);
}

describe("Mp3StreamEncoder", () => {
  it("encodes 24 kHz speech into MPEG-2 Layer III frames at the asked rate and bitrate", async () => {
    const mp3 = await encodeAll(bytesOf(speech24k.samples), { sampleRate: 24000, bitrateKbps: 128 });
    const frames = mp3Frames(mp3);
    expect(frames.length).toBeGreaterThan(100);
    for (const f of frames) {
      expect(f.version).toBe("2");
      expect(f.sampleRate).toBe(24000);
      expect(f.bitrateKbps).toBe(128);
      expect(f.tag).toBe(false);
    }
    expect(frames.at(-1)!.offset + frames.at(-1)!.length).toBe(mp3.length);
    expectDurationMatches(mp3, speech24k.samples.length);
  });

  it("keeps the duration for other lengths, 16 kHz and another bitrate", async () => {
    for (const n of [1, 575, 577, 24_000, 24_001]) {
      const pcm = bytesOf(speech24k.samples.subarray(0, n));
      expectDurationMatches(await encodeAll(pcm, { sampleRate: 24000, bitrateKbps: 64 }, 300), n);
    }
    const mp3 = await encodeAll(bytesOf(speech16k.samples), { sampleRate: 16000, bitrateKbps: 96 });
    expect(new Set(mp3Frames(mp3).map((f) => `${f.sampleRate}/${f.bitrateKbps}`))).toEqual(
      new Set(["16000/96"]),
    );
    expectDurationMatches(mp3, speech16k.samples.length);
  });

  it("encodes silence into valid frames of the same duration", async () => {
    const silence = Buffer.alloc(24_000 * 2 * 2);
    const mp3 = await encodeAll(silence, { sampleRate: 24000, bitrateKbps: 128 });
    expect(mp3Frames(mp3).every((f) => f.bitrateKbps === 128)).toBe(true);
    expectDurationMatches(mp3, 48_000);
  });

  it("keeps what is encoded before the encoder is ready and gives it out on the next encode", async () => {
    const enc = new Mp3StreamEncoder({ sampleRate: 24000, bitrateKbps: 128 });
    const pcm = bytesOf(speech24k.samples.subarray(0, 12_000));
    const early = enc.encode(pcm);
    expect(() => enc.flush()).toThrow(Mp3EncoderNotReadyError);
    await enc.ready;
    const mp3 = Buffer.concat([early, enc.encode(Buffer.alloc(0)), enc.flush()]);
    expectDurationMatches(mp3, 12_000);
  });

  it("flush ends cleanly: whole frames only, a second flush is empty, encode afterwards throws", async () => {
    const enc = new Mp3StreamEncoder({ sampleRate: 24000, bitrateKbps: 128 });
    await enc.ready;
    const head = enc.encode(bytesOf(speech24k.samples.subarray(0, 5000)));
    const tail = enc.flush();
    expect(tail.length).toBeGreaterThan(0);
    expect(() => mp3Frames(Buffer.concat([head, tail]))).not.toThrow();
    expect(enc.flush().length).toBe(0);
    expect(() => enc.encode(Buffer.alloc(2))).toThrow(/ended/);
  });

  it("emits frames as audio arrives, not only at the end", async () => {
    const enc = new Mp3StreamEncoder({ sampleRate: 24000, bitrateKbps: 128 });
    await enc.ready;
    const pcm = bytesOf(speech24k.samples.subarray(0, 24_000));
    let before = 0;
    for (let i = 0; i < pcm.length; i += 1920) before += enc.encode(pcm.subarray(i, i + 1920)).length;
    // One second in: everything but LAME's look-ahead has come out already.
    expect(before).toBeGreaterThan(16_000 * 0.85);
  });

  it("meets the device's start rule (a second of 24 kHz PCM16 / 8 = 6000 bytes) within half a second of audio", async () => {
    const enc = new Mp3StreamEncoder({ sampleRate: 24000, bitrateKbps: MP3_SPEECH_BITRATE_KBPS });
    await enc.ready;
    const pcm = bytesOf(speech24k.samples);
    const threshold = (24_000 * 2) / 8;
    let out = 0;
    let inputMs = 0;
    for (let i = 0; out < threshold && i < pcm.length; i += 960) {
      out += enc.encode(pcm.subarray(i, i + 960)).length; // 20 ms at a time, as audio deltas come
      inputMs += 20;
    }
    expect(out).toBeGreaterThanOrEqual(threshold);
    expect(inputMs).toBeLessThanOrEqual(500);
  });

  it("refuses a bitrate or sample rate MPEG-2 Layer III does not have", () => {
    expect(() => new Mp3StreamEncoder({ sampleRate: 24000, bitrateKbps: 192 })).toThrow(RangeError);
    expect(() => new Mp3StreamEncoder({ sampleRate: 44100 as 24000, bitrateKbps: 64 })).toThrow(RangeError);
  });
});
