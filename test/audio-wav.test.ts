import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { encodeWav, parseWav, WavFormatError, type WavProblem } from "../src/audio/wav.js";

const FIXTURES = new URL("./fixtures/audio/", import.meta.url);

function chunk(id: string, body: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.write(id, 0, "latin1");
  header.writeUInt32LE(body.length, 4);
  return Buffer.concat([header, body, Buffer.alloc(body.length % 2)]);
}

function fmt(opts: {
  format?: number;
  channels?: number;
  rate?: number;
  bits?: number;
  extra?: Buffer;
}): Buffer {
  const channels = opts.channels ?? 1;
  const bits = opts.bits ?? 16;
  const rate = opts.rate ?? 16000;
  const body = Buffer.alloc(16);
  body.writeUInt16LE(opts.format ?? 1, 0);
  body.writeUInt16LE(channels, 2);
  body.writeUInt32LE(rate, 4);
  body.writeUInt32LE((rate * channels * bits) / 8, 8);
  body.writeUInt16LE((channels * bits) / 8, 12);
  body.writeUInt16LE(bits, 14);
  return chunk("fmt ", opts.extra ? Buffer.concat([body, opts.extra]) : body);
}

function riff(...chunks: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from("WAVE", "latin1"), ...chunks]);
  const header = Buffer.alloc(8);
  header.write("RIFF", 0, "latin1");
  header.writeUInt32LE(body.length, 4);
  return Buffer.concat([header, body]);
}

function pcmBytes(samples: readonly number[]): Buffer {
  const b = Buffer.alloc(samples.length * 2);
  samples.forEach((s, i) => b.writeInt16LE(s, 2 * i));
  return b;
}

function problemOf(buf: Buffer): WavProblem | undefined {
  try {
    parseWav(buf);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(WavFormatError);
    return (err as WavFormatError).problem;
  }
}

describe("parseWav", () => {
  it("reads the shared fixtures with their rates and lengths", () => {
    const a = parseWav(readFileSync(new URL("living_room_16k.wav", FIXTURES)));
    expect(a.sampleRate).toBe(16000);
    expect(a.samples.length).toBe(72436);
    const b = parseWav(readFileSync(new URL("sweep_24k_sox_vhq.wav", FIXTURES)));
    expect(b.sampleRate).toBe(24000);
    expect(b.samples.length).toBe(72000);
    // The sweep starts 0x0020, 0x00c7, 0x01b2 (little-endian in the file).
    expect(Array.from(b.samples.subarray(0, 3))).toEqual([0x20, 0xc7, 0x1b2]);
  });

  it("round-trips encodeWav, negative and extreme samples included", () => {
    const samples = Int16Array.from([0, 1, -1, 32767, -32768, 1234, -4321]);
    const wav = encodeWav(samples, 24000);
    expect(wav.length).toBe(44 + 14);
    const back = parseWav(wav);
    expect(back.sampleRate).toBe(24000);
    expect(Array.from(back.samples)).toEqual(Array.from(samples));
  });

  it("walks chunks: skips unknown ones, honours the pad byte of odd-sized chunks, reads unaligned data", () => {
    const buf = riff(
      chunk("LIST", Buffer.from("INFOISFT\x03\x00\x00\x00ab\x00", "latin1")), // 15 bytes + pad
      fmt({ rate: 22050 }),
      chunk("fact", Buffer.from([1, 2, 3])), // odd: pad byte follows
      chunk("data", pcmBytes([5, -6, 7])),
    );
    const wav = parseWav(buf);
    expect(wav.sampleRate).toBe(22050);
    expect(Array.from(wav.samples)).toEqual([5, -6, 7]);
    // A Buffer that starts at an odd byte offset of its ArrayBuffer still parses.
    const shifted = Buffer.concat([Buffer.from([0]), buf]).subarray(1);
    expect(Array.from(parseWav(shifted).samples)).toEqual([5, -6, 7]);
  });

  it("accepts WAVE_FORMAT_EXTENSIBLE with the PCM sub-format", () => {
    const extra = Buffer.alloc(24);
    extra.writeUInt16LE(22, 0); // cbSize
    extra.writeUInt16LE(16, 2); // valid bits
    extra.writeUInt32LE(4, 4); // channel mask
    extra.writeUInt16LE(1, 8); // sub-format GUID starts with the PCM tag
    expect(parseWav(riff(fmt({ format: 0xfffe, extra }), chunk("data", pcmBytes([9])))).samples[0]).toBe(9);
    extra.writeUInt16LE(3, 8); // IEEE float sub-format
    expect(problemOf(riff(fmt({ format: 0xfffe, extra }), chunk("data", pcmBytes([9]))))).toBe("not_pcm");
  });

  it("reads a streamed WAV whose data size is unknown (0xFFFFFFFF) to the end of the buffer", () => {
    const data = chunk("data", pcmBytes([1, 2, 3, 4]));
    data.writeUInt32LE(0xffffffff, 4);
    expect(Array.from(parseWav(riff(fmt({}), data)).samples)).toEqual([1, 2, 3, 4]);
  });

  it.each<[string, Buffer, WavProblem]>([
    ["not RIFF", Buffer.from("RIFX0000WAVEfmt ", "latin1"), "not_riff"],
    ["too short", Buffer.from("RIFF", "latin1"), "not_riff"],
    ["RIFF but not WAVE", Buffer.from("RIFF\x04\x00\x00\x00AVI ", "latin1"), "not_riff"],
    ["IEEE float", riff(fmt({ format: 3, bits: 32 }), chunk("data", Buffer.alloc(8))), "not_pcm"],
    ["A-law", riff(fmt({ format: 6, bits: 8 }), chunk("data", Buffer.alloc(8))), "not_pcm"],
    ["stereo", riff(fmt({ channels: 2 }), chunk("data", Buffer.alloc(8))), "not_mono"],
    ["8-bit", riff(fmt({ bits: 8 }), chunk("data", Buffer.alloc(8))), "not_16_bit"],
    ["24-bit", riff(fmt({ bits: 24 }), chunk("data", Buffer.alloc(6))), "not_16_bit"],
    ["data before fmt", riff(chunk("data", Buffer.alloc(4)), fmt({})), "no_fmt"],
    ["no fmt at all", riff(chunk("LIST", Buffer.alloc(4))), "no_fmt"],
    ["no data", riff(fmt({})), "no_data"],
    ["odd data size", riff(fmt({}), chunk("data", Buffer.alloc(3))), "odd_data"],
    ["short fmt", riff(chunk("fmt ", Buffer.alloc(10)), chunk("data", Buffer.alloc(2))), "bad_header"],
    ["fmt past the end", riff(fmt({})).subarray(0, 30), "truncated"],
  ])("rejects %s with a typed error", (_name, buf, problem) => {
    expect(problemOf(buf)).toBe(problem);
  });

  it("says why in the message", () => {
    expect(() => parseWav(riff(fmt({ channels: 2 }), chunk("data", Buffer.alloc(8))))).toThrow(
      /invalid WAV: 2 channels, expected mono/,
    );
  });
});
