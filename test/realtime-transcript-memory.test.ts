/** The conversation's transcript memory, driven directly with a test clock. */
import { describe, expect, it } from "vitest";
import { TranscriptMemory, heardPart } from "../src/realtime/transcript-memory.js";

describe("TranscriptMemory", () => {
  it("keeps the last 12 non-blank turns and summarises them as context", () => {
    const m = new TranscriptMemory<string>(() => 0);
    expect(m.context()).toBeUndefined();
    m.remember("user", "   ");
    for (let i = 1; i <= 14; i++) m.remember(i % 2 ? "user" : "assistant", `turn ${i}`);
    expect(m.history).toHaveLength(12);
    expect(m.history[0]).toEqual({ role: "user", text: "turn 3" });
    expect(m.context()).toContain("Assistant: turn 14");
    m.prepend([{ role: "user", text: "earlier" }]);
    expect(m.history).toHaveLength(12);
    expect(m.history[0]).toEqual({ role: "user", text: "turn 3" });
  });

  it("a barge-in keeps only the heard share of the reply it cut", () => {
    const m = new TranscriptMemory<string>(() => 0);
    m.remember("user", "Tell me a story");
    m.noteAudio("s1", "item_1", 48 * 1000); // one second of 24 kHz PCM16
    m.remember("assistant", "one two three four five six seven eight nine ten");
    expect(m.ownerOf("item_1")).toBe("s1");
    expect(m.trimHeard("item_1", 500)).toBe(true);
    expect(m.history.at(-1)).toEqual({ role: "assistant", text: "one two three four five…" });
    // Cutting again at the same point changes nothing; nothing heard drops the turn.
    expect(m.trimHeard("item_1", 1000)).toBe(false);
    expect(m.trimHeard("item_1", 0)).toBe(true);
    expect(m.history).toEqual([{ role: "user", text: "Tell me a story" }]);
    expect(m.trimHeard("unknown", 10)).toBe(false);
  });

  it("says how long an owner's last reply may still be playing, and forgets old items", () => {
    let now = 1000;
    const m = new TranscriptMemory<string>(() => now);
    m.noteAudio("s1", "item_1", 48 * 2000);
    now = 1500;
    expect(m.playingFor("s1")).toBe(1500);
    expect(m.playingFor("s2")).toBe(0);
    for (let i = 2; i <= 9; i++) m.noteAudio("s2", `item_${i}`, 48);
    expect(m.ownerOf("item_1")).toBeUndefined();
    expect(m.ownerOf("item_9")).toBe("s2");
  });
});

describe("heardPart", () => {
  it("the first share of the words, with an ellipsis when cut", () => {
    expect(heardPart("a b c d", 0.5)).toBe("a b…");
    expect(heardPart("a b c d", 1)).toBe("a b c d");
    expect(heardPart("a b c d", 0.1)).toBe("");
  });
});
