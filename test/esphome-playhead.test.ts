/** The device's play head as the turn models it (pure): start rule, real-time play, truncation points. */
import { describe, expect, it } from "vitest";
import { DevicePlayhead, startRule, startRuleMs } from "../src/esphome/playhead.js";

describe("DevicePlayhead", () => {
  it("start rule: WAV counts every byte plus the decoder's 24 KiB; MP3 an eighth, in encoded bytes, plus one frame", () => {
    expect(startRule("wav")).toEqual({ ringMs: 1000, heldMinMs: 512, heldMaxMs: 1024 });
    expect(startRuleMs("wav")).toBeCloseTo(1000 + 512, 0);
    // 6000 encoded bytes at 160 kbit/s (20 bytes/ms), one 24 ms frame; the 24 KiB input holds 1228.8 ms.
    expect(startRule("mp3", 160)).toEqual({ ringMs: 300, heldMinMs: 24, heldMaxMs: 1228.8 });
    expect(startRuleMs("mp3", 128)).toBeCloseTo(375 + 24, 0);
    expect(startRuleMs("mp3", 48)).toBeCloseTo(1000 + 24, 0);
  });

  it("what the device took by the decoder's first fill is held out of the count (MP3: up to its 24 KiB input)", () => {
    const burst = new DevicePlayhead(startRule("mp3", 160));
    burst.wrote("a", 3000);
    burst.served(500, 0); // arrived before the first pass: the decoder holds it
    burst.served(790, 10);
    expect(burst.playStart).toBeNull();
    burst.served(800, 20);
    expect(burst.playStart).toBe(20);

    const capped = new DevicePlayhead(startRule("mp3", 160));
    capped.wrote("a", 3000);
    capped.served(1300, 0); // more than its input takes: 1228.8 ms are held
    capped.served(1528, 10);
    expect(capped.playStart).toBeNull();
    capped.served(1529, 20);
    expect(capped.playStart).toBe(20);

    const trickle = new DevicePlayhead(startRule("mp3", 160));
    trickle.wrote("a", 3000);
    trickle.served(5, 0); // less than a frame: it keeps filling until one frame is in
    trickle.served(323, 10);
    expect(trickle.playStart).toBeNull();
    trickle.served(324, 20);
    expect(trickle.playStart).toBe(20);

    const wav = new DevicePlayhead(startRule("wav"));
    wav.wrote("a", 3000);
    wav.served(100, 0); // the WAV decoder keeps pulling until its 24 KiB output is full
    wav.served(1511, 10);
    expect(wav.playStart).toBeNull();
    wav.served(1512, 20);
    expect(wav.playStart).toBe(20);
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
