/** The device's play head as the turn models it (pure): start rule, real-time play, truncation points. */
import { describe, expect, it } from "vitest";
import { DevicePlayhead, startRuleMs } from "../src/esphome/playhead.js";

describe("DevicePlayhead", () => {
  it("start rule: WAV counts every byte plus the decoder's 24 KiB; MP3 an eighth, in encoded bytes", () => {
    expect(startRuleMs("wav")).toBeCloseTo(1000 + 512, 0);
    // 6000 encoded bytes at 128 kbit/s (16 bytes/ms) and one 24 ms frame.
    expect(startRuleMs("mp3", 128)).toBeCloseTo(375 + 24, 0);
    expect(startRuleMs("mp3", 48)).toBeCloseTo(1000 + 24, 0);
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
