/**
 * The emulated media player's start rule (`PausedDecoder`), driven turn by turn with a virtual clock over
 * real reply streams (the product's MP3 encoder; a 24 kHz WAV), arriving at 1× and 4× real time from the
 * moment the decode task starts. Checked against the firmware's rule, and against the product's own
 * estimate (`startRule` in src/esphome/playhead.ts).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { Mp3StreamEncoder } from "../../src/audio/mp3.js";
import { DevicePlayhead, startRule } from "../../src/esphome/playhead.js";
import { DECODER_PASS_MS, PausedDecoder, type DecoderGeneration } from "./emulator/media-player.js";

const AUDIO_MS = 3000;
const PCM_BYTES_PER_MS = 48;

function speech(ms: number): Buffer {
  const n = (24000 * ms) / 1000;
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(Math.sin(i / 9) * Math.sin(i / 2300) * 9000), i * 2);
  return b;
}

async function mp3Stream(kbps: number): Promise<Buffer> {
  const enc = new Mp3StreamEncoder({ sampleRate: 24000, bitrateKbps: kbps });
  await enc.ready;
  return Buffer.concat([enc.encode(speech(AUDIO_MS)), enc.flush()]);
}

function wavStream(): Buffer {
  const pcm = speech(AUDIO_MS);
  const h = Buffer.alloc(44);
  h.write("RIFF", 0, "ascii");
  h.writeUInt32LE(36 + pcm.length, 4);
  h.write("WAVEfmt ", 8, "ascii");
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(24000, 24);
  h.writeUInt32LE(48000, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write("data", 36, "ascii");
  h.writeUInt32LE(pcm.length, 40);
  return Buffer.concat([h, pcm]);
}

interface FirstSound {
  /** Reply audio (ms) that had arrived at the first sound. */
  arrivedMs: number;
  /** Stream bytes that had arrived. */
  received: number;
  held: number;
  ring: number;
  initial: number;
  /** Bytes that arrive in one decode-task turn. */
  perTurn: number;
  /** Audio (ms) that had arrived by the decoder's first pass. */
  firstPassMs: number;
}

/** Runs the decode task over `stream` (bytes proportional to audio time) arriving at `speed` × real time. */
function firstSound(
  type: "wav" | "mp3",
  stream: Buffer,
  speed: number,
  generation: DecoderGeneration = "current",
): FirstSound {
  const d = new PausedDecoder(type, generation);
  const header = type === "wav" ? 44 : 0;
  const bytesAt = (ms: number): number =>
    header + Math.floor(((stream.length - header) * Math.min(ms, AUDIO_MS)) / AUDIO_MS);
  for (let t = DECODER_PASS_MS; t < 60_000; t += DECODER_PASS_MS) {
    const arrivedMs = Math.min(AUDIO_MS, t * speed);
    const received = stream.subarray(0, bytesAt(arrivedMs));
    if (d.turn(received, arrivedMs >= AUDIO_MS))
      return {
        arrivedMs,
        received: received.length,
        held: d.held,
        ring: d.ringBytes(received.length),
        initial: d.initialBytes,
        perTurn: bytesAt(DECODER_PASS_MS * speed) - header,
        firstPassMs: DECODER_PASS_MS * speed,
      };
    expect(d.error).toBeNull();
  }
  throw new Error("never started");
}

/** The product's estimate: the served samples a turn takes every pass, from the decoder's first pass. */
function estimatedStartMs(format: "wav" | "mp3", kbps: number, speed: number): number {
  const p = new DevicePlayhead(startRule(format, kbps));
  p.wrote("a", AUDIO_MS);
  for (let t = DECODER_PASS_MS; t < 60_000; t += DECODER_PASS_MS) {
    const served = Math.min(AUDIO_MS, t * speed);
    p.served(served, t);
    if (p.playStart !== null) return served;
  }
  throw new Error("never started");
}

let mp3At160: Buffer;
let mp3At128: Buffer;
const wav = wavStream();

beforeAll(async () => {
  [mp3At160, mp3At128] = await Promise.all([mp3Stream(160), mp3Stream(128)]);
});

describe.each([1, 4])("start rule at %i× real time", (speed) => {
  it("MP3 (current firmware): the decoder holds its first fill and one frame; then 6000 bytes must reach the ring", () => {
    const s = firstSound("mp3", mp3At160, speed);
    expect(s.initial).toBe(6000); // 24 kHz mono: 48 000 bytes a second ÷ 8
    // It stops pulling once one frame is decoded: what it holds came by the pass that completed a frame.
    const frameBytes = (576 / 24000) * 20_000; // 480 bytes at 160 kbit/s
    expect(s.held).toBeGreaterThanOrEqual(frameBytes);
    expect(s.held).toBeLessThanOrEqual(Math.max(s.perTurn, 2 * frameBytes));
    expect(s.ring).toBeGreaterThanOrEqual(6000);
    expect(s.ring).toBeLessThan(6000 + s.perTurn);
    // 6000 bytes at 20 bytes/ms is 300 ms of audio after the first fill.
    expect(s.arrivedMs).toBeGreaterThanOrEqual(300 + s.firstPassMs);
    expect(s.arrivedMs).toBeLessThanOrEqual(300 + 2 * s.firstPassMs + DECODER_PASS_MS * speed);
  });

  it("WAV: the decoder fills its 24 KiB output first; then a second of audio (48 000 bytes) must reach the ring", () => {
    const s = firstSound("wav", wav, speed);
    expect(s.initial).toBe(48_000);
    expect(s.held).toBeGreaterThanOrEqual(44 + 24 * 1024 - 1024);
    expect(s.held).toBeLessThanOrEqual(44 + 24 * 1024 + s.perTurn);
    expect(s.ring).toBeGreaterThanOrEqual(48_000);
    expect(s.ring).toBeLessThan(48_000 + s.perTurn);
    expect(s.arrivedMs).toBeGreaterThanOrEqual(1000 + (24 * 1024 - 1024) / PCM_BYTES_PER_MS);
  });

  it("MP3 starts after less audio than WAV, and 160 kbit/s sooner than 128", () => {
    const at160 = firstSound("mp3", mp3At160, speed).arrivedMs;
    const at128 = firstSound("mp3", mp3At128, speed).arrivedMs;
    expect(at160).toBeLessThan(at128);
    expect(at128).toBeLessThan(firstSound("wav", wav, speed).arrivedMs / 2);
  });

  it("the 2024 decoder (24 KiB MP3 output) holds ~18 frames more and starts later", () => {
    const old = firstSound("mp3", mp3At160, speed, "2024");
    const current = firstSound("mp3", mp3At160, speed);
    expect(old.ring).toBeGreaterThanOrEqual(6000);
    // 18 decoded frames of 1152 bytes leave less than the 4608 bytes a frame needs; each took 480 bytes.
    expect(old.held).toBeGreaterThanOrEqual(17 * 480);
    expect(old.arrivedMs).toBeGreaterThan(current.arrivedMs + 17 * 24 - 2 * DECODER_PASS_MS * speed);
  });

  it("the product's play-head estimate starts where the emulated device does, within a turn", () => {
    for (const [format, stream] of [
      ["mp3", mp3At160],
      ["wav", wav],
    ] as const) {
      const device = firstSound(format, stream, speed).arrivedMs;
      const estimate = estimatedStartMs(format, 160, speed);
      expect(Math.abs(estimate - device)).toBeLessThanOrEqual(2 * DECODER_PASS_MS * speed + 24);
    }
  });
});
