/** The device's play head as the turn models it (pure): start rule, real-time play, truncation points. */
import { describe, expect, it } from "vitest";
import { DevicePlayhead, startRule, startRuleMs, type StartRule } from "../src/esphome/playhead.js";

describe("DevicePlayhead", () => {
  it("start rule: WAV counts every byte plus the decoder's 24 KiB; MP3 an eighth, in encoded bytes, plus one frame", () => {
    expect(startRule("wav")).toEqual({ ringMs: 1000, heldMinMs: 512, heldMaxMs: 1024 });
    expect(startRuleMs("wav")).toBeCloseTo(1000 + 512, 0);
    // 6000 encoded bytes at 160 kbit/s (20 bytes/ms), one 24 ms frame; the 24 KiB input holds 1228.8 ms.
    expect(startRule("mp3", 160)).toEqual({ ringMs: 300, heldMinMs: 24, heldMaxMs: 1228.8 });
    expect(startRuleMs("mp3", 128)).toBeCloseTo(375 + 24, 0);
    expect(startRuleMs("mp3", 48)).toBeCloseTo(1000 + 24, 0);
  });

  /** Clock time (ms) of the first sound when the device has taken each of `served` (ms) 10 ms apart. */
  function startsAt(rule: StartRule, served: number[]): number | null {
    const p = new DevicePlayhead(rule);
    p.wrote("a", 3000);
    served.forEach((ms, i) => p.served(ms, i * 10));
    return p.playStart;
  }

  it("what the device took by the decoder's first fill is held out of the count (MP3: up to its 24 KiB input)", () => {
    const mp3 = startRule("mp3", 160);
    // Arrived before the first pass: the decoder holds it; 300 ms more must come.
    expect(startsAt(mp3, [500, 799])).toBeNull();
    expect(startsAt(mp3, [500, 790, 800])).toBe(20);
    // More than its input takes: 1228.8 ms are held.
    expect(startsAt(mp3, [1300, 1528])).toBeNull();
    expect(startsAt(mp3, [1300, 1528, 1529])).toBe(20);
    // Less than a frame: it keeps filling until one frame (24 ms) is in.
    expect(startsAt(mp3, [5, 323])).toBeNull();
    expect(startsAt(mp3, [5, 323, 324])).toBe(20);
    // The WAV decoder keeps pulling until its 24 KiB output (512 ms) is full; then a second.
    expect(startsAt(startRule("wav"), [100, 1511])).toBeNull();
    expect(startsAt(startRule("wav"), [100, 1511, 1512])).toBe(20);
  });

  it("plays nothing before the start rule is met, then in real time, never more than was written", () => {
    const p = new DevicePlayhead(400);
    p.wrote("a", 300);
    p.served(300, 1000);
    expect(p.playStart).toBeNull();
    expect(p.playedMs(2000)).toBe(0);
    p.wrote("a", 300);
    p.served(600, 1100);
    expect(p.playStart).toBe(1100);
    expect(p.playedMs(1350)).toBe(250);
    expect(p.playedMs(9999)).toBe(600);
  });

  it("a stream that ends below the start rule plays what it has", () => {
    const p = new DevicePlayhead(1500);
    p.wrote("a", 200);
    p.served(200, 10);
    expect(p.playStart).toBeNull();
    p.end();
    p.served(200, 20);
    expect(p.playStart).toBe(20);
  });

  it("stoppedAt: the item under the play head with the offset heard, later items unheard, silence skipped", () => {
    const p = new DevicePlayhead(0);
    p.wrote("a", 500);
    p.wrote(null, 1000); // keep-alive while a tool ran
    p.wrote("b", 800);
    p.wrote("c", 300);
    p.served(1, 0);
    expect(p.stoppedAt(200)).toEqual({ head: { itemId: "a", audioEndMs: 200 }, unheard: ["b", "c"] });
    expect(p.stoppedAt(1700)).toEqual({ head: { itemId: "b", audioEndMs: 200 }, unheard: ["c"] });
    expect(p.stoppedAt(1000)).toEqual({ head: null, unheard: ["b", "c"] });
    expect(p.cutShort(1700)).toBe(true);
    expect(p.cutShort(2600)).toBe(false);
  });
});
