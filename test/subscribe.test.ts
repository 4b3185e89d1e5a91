import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { subscribe } from "../src/subscribe.js";

describe("subscribe", () => {
  it("adds the handlers and removes exactly those, once", () => {
    const e = new EventEmitter<{ a: [n: number]; b: [] }>();
    const seen: string[] = [];
    const other = (): void => void seen.push("other");
    e.on("a", other);
    const off = subscribe(e, { a: (n) => void seen.push(`a${n}`), b: () => void seen.push("b") });
    e.emit("a", 1);
    e.emit("b");
    off();
    off();
    e.emit("a", 2);
    e.emit("b");
    expect(seen).toEqual(["other", "a1", "b", "other"]);
    expect(e.listenerCount("a")).toBe(1);
    expect(e.listenerCount("b")).toBe(0);
  });
});
