import { describe, expect, it } from "vitest";
import { ReplyBook, STOPPED_MEMORY } from "../src/satellite/replies.js";

const pcm = (bytes: number): Buffer => Buffer.alloc(bytes);

describe("ReplyBook", () => {
  it("plays the first reply; later ones wait and are promoted in order", () => {
    const book = new ReplyBook();
    const a = book.start("a")!;
    const b = book.start("b")!;
    expect([a.playing, b.playing]).toEqual([true, false]);
    expect(book.start("a")).toBeUndefined();
    expect(book.hold(b, "item-b", pcm(10), 100)).toBe(true);
    expect(book.promote()).toBeUndefined(); // the head already plays
    expect(book.end(a)).toBe(true);
    expect(book.end(a)).toBe(false);
    const next = book.promote()!;
    expect(next.reply).toBe(b);
    expect(b.playing).toBe(true);
    expect(next.held.map((h) => h.itemId)).toEqual(["item-b"]);
    expect([b.waiting.length, b.waitingBytes]).toEqual([0, 0]);
  });

  it("drops held audio beyond the reply's byte limit", () => {
    const book = new ReplyBook();
    book.start("a");
    const b = book.start("b")!;
    expect(book.hold(b, "i", pcm(60), 100)).toBe(true);
    expect(book.hold(b, "i", pcm(60), 100)).toBe(false);
    expect(b.waitingBytes).toBe(60);
  });

  it("remembers ended replies (bounded) so they do not start again", () => {
    const book = new ReplyBook();
    book.start("r0");
    book.endAll();
    expect(book.ended("r0")).toBe(true);
    expect(book.start("r0")).toBeUndefined();
    for (let i = 1; i <= STOPPED_MEMORY; i++) book.end(book.start(`r${i}`)!);
    expect(book.ended("r0")).toBe(false);
    expect(book.ended(`r${STOPPED_MEMORY}`)).toBe(true);
  });

  it("drop forgets replies without remembering them", () => {
    const book = new ReplyBook();
    book.start("a");
    book.drop();
    expect(book.size).toBe(0);
    expect(book.ended("a")).toBe(false);
  });

  it("a stop snapshot finds the head item's start and every unheard item once", () => {
    const book = new ReplyBook();
    const a = book.start("a")!;
    a.itemStarts.set("x", 0).set("y", 1200);
    a.upstreamEnd = "done";
    const b = book.start("b")!;
    book.hold(b, "z", pcm(4), 100);
    book.hold(b, "z", pcm(4), 100);
    expect(book.snapshot("y")).toEqual({ headStartMs: 1200, unheard: ["x", "z"], responseInFlight: true });
    b.upstreamEnd = "done";
    expect(book.snapshot(undefined)).toEqual({
      headStartMs: null,
      unheard: ["x", "y", "z"],
      responseInFlight: false,
    });
  });
});
