/** A reply stream whose MP3 encoder cannot load ends as `failed`, and the device gets nothing half-made. */
import { pino } from "pino";
import { expect, it, vi } from "vitest";
import { ReplyStreams } from "../../src/esphome/reply-stream.js";

const attempts = vi.hoisted(() => ({ count: 0 }));
vi.mock("wasm-media-encoders", () => ({
  createEncoder: () => {
    attempts.count++;
    return Promise.reject(new Error("WebAssembly.instantiate(): out of memory"));
  },
}));

it("ends the stream as failed when LAME cannot be loaded, and lets a later attempt try again", async () => {
  const streams = new ReplyStreams({ baseUrl: "http://127.0.0.1:1", logger: pino({ level: "silent" }) });
  await expect(streams.prepare("mp3")).rejects.toThrow(/out of memory/);
  const s = streams.open({ device: "kitchen", format: "mp3" });
  s.write(Buffer.alloc(4800));
  expect(await s.done).toBe("failed");
  expect(streams.size).toBe(0);
  const before = attempts.count;
  await expect(streams.prepare("mp3")).rejects.toThrow(/out of memory/);
  expect(attempts.count).toBe(before + 1); // tried again, not a cached failure
});
