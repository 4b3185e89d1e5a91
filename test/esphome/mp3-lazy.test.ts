/** Start-up stays lean: nothing loads LAME until an MP3 reply (or prepare("mp3")) needs it. */
import { pino } from "pino";
import { expect, it } from "vitest";
import { Mp3StreamEncoder } from "../../src/audio/mp3.js";
import { ReplyStreams } from "../../src/esphome/reply-stream.js";

it("loads the MP3 encoder only when an MP3 reply needs it", async () => {
  const streams = new ReplyStreams({ baseUrl: "http://127.0.0.1:1", logger: pino({ level: "silent" }) });
  const wav = streams.open({ device: "kitchen", format: "wav" });
  wav.write(Buffer.alloc(960));
  expect(Mp3StreamEncoder.loaded).toBe(false);
  await streams.prepare("mp3");
  expect(Mp3StreamEncoder.loaded).toBe(true);
});
