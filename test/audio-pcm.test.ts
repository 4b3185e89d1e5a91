import { describe, expect, it } from "vitest";
import { pcm16Bytes, pcm16View } from "../src/audio/pcm.js";

describe("PCM16 byte views", () => {
  const bytes = Buffer.from([0x01, 0x00, 0xff, 0xff, 0x00, 0x80, 0xff, 0x7f]);

  it("views aligned bytes without copying", () => {
    const samples = pcm16View(bytes);
    expect(Array.from(samples)).toEqual([1, -1, -32768, 32767]);
    expect(samples.buffer).toBe(bytes.buffer);
  });

  it("copies bytes that sit at an odd offset", () => {
    const odd = Buffer.concat([Buffer.from([9]), bytes]).subarray(1);
    expect(odd.byteOffset % 2).toBe(1);
    const samples = pcm16View(odd);
    expect(Array.from(samples)).toEqual([1, -1, -32768, 32767]);
    expect(samples.buffer).not.toBe(odd.buffer);
  });

  it("rejects an odd byte count", () => {
    expect(() => pcm16View(bytes.subarray(0, 3))).toThrow(RangeError);
  });

  it("gives back the same bytes, sharing memory", () => {
    const samples = Int16Array.from([1, -1, -32768, 32767]);
    const out = pcm16Bytes(samples);
    expect(out.equals(bytes)).toBe(true);
    samples[0] = 2;
    expect(out[0]).toBe(2);
  });
});
