/**
 * The programs' memory (pure): texts compared after whitespace normalisation, values expiring after
 * their time to live, several values per text handed out newest first, and kept audio that readers can
 * follow while it still arrives.
 */
import { describe, expect, it } from "vitest";
import { ExpiringTextIndex, KeptAudio, normaliseText } from "../src/wyoming/memory.js";

describe("normaliseText", () => {
  it("collapses whitespace runs and trims, and nothing else", () => {
    expect(normaliseText("  The kitchen\n light\tis  on. ")).toBe("The kitchen light is on.");
    expect(normaliseText("Is it ON?")).toBe("Is it ON?");
  });
});

describe("ExpiringTextIndex", () => {
  it("takes the newest live value of a text once, by its normalised form", () => {
    const index = new ExpiringTextIndex<string>(30_000);
    index.put("turn on the light", "satellite A", 0);
    index.put("turn  on the light ", "satellite B", 10);
    expect(index.size).toBe(2);
    expect(index.take("turn on the light", 20)).toBe("satellite B");
    expect(index.take("turn on the light", 20)).toBe("satellite A");
    expect(index.take("turn on the light", 20)).toBeUndefined();
    expect(index.size).toBe(0);
  });

  it("forgets values at their time to live, and sweep returns them", () => {
    const index = new ExpiringTextIndex<string>(1000);
    index.put("a", "old", 0);
    index.put("a", "new", 600);
    expect(index.newest("a", 999)).toBe("new");
    expect(index.take("a", 1000)).toBe("new");
    index.put("b", "b1", 2000);
    expect(index.sweep(2999)).toEqual(["old"]);
    expect(index.sweep(3000)).toEqual(["b1"]);
    expect(index.newest("b", 3000)).toBeUndefined();
  });

  it("leaves an expired value for sweep: a take or a look that passes over it does not lose it", () => {
    // An ASR turn's conversation is ended by whoever gets it from sweep; one dropped here would stay open.
    const index = new ExpiringTextIndex<string>(1000);
    index.put("a", "answered locally", 0);
    index.put("a", "asked again", 600);
    index.put("c", "never claimed", 0);
    expect(index.take("a", 1000)).toBe("asked again");
    expect(index.take("c", 1000)).toBeUndefined();
    expect(index.newest("c", 1000)).toBeUndefined();
    expect(index.sweep(1000).sort()).toEqual(["answered locally", "never claimed"]);
    expect(index.size).toBe(0);
  });

  it("removes a value wherever it is", () => {
    const index = new ExpiringTextIndex<object>(1000);
    const v = {};
    index.put("x", v, 0);
    index.put("y", {}, 0);
    index.remove(v);
    expect(index.take("x", 1)).toBeUndefined();
    expect(index.size).toBe(1);
  });
});

describe("KeptAudio", () => {
  it("replays what it has at once, then follows until the end", () => {
    const kept = new KeptAudio();
    kept.append(Buffer.from([1, 2]));
    const got: number[][] = [];
    let end: string | null = null;
    kept.read(
      (pcm) => got.push([...pcm]),
      (how) => (end = how),
    );
    expect(got).toEqual([[1, 2]]);
    kept.append(Buffer.from([3, 4]));
    expect(got).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(end).toBeNull();
    kept.finish("complete");
    kept.append(Buffer.from([5, 6]));
    expect(end).toBe("complete");
    expect(kept.bytes).toBe(4);
    const late: number[][] = [];
    kept.read(
      (pcm) => late.push([...pcm]),
      (how) => (end = how),
    );
    expect(late).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });

  it("stops following when the reader leaves", () => {
    const kept = new KeptAudio();
    const got: Buffer[] = [];
    const stop = kept.read(
      (pcm) => got.push(pcm),
      () => got.push(Buffer.from("end")),
    );
    stop();
    kept.append(Buffer.from([1, 2]));
    kept.finish("cut");
    expect(got).toEqual([]);
    expect(kept.ended).toBe("cut");
  });
});
