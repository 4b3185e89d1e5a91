/**
 * WebSocket masking in WebAssembly (src/net/ws-mask.ts), the `bufferutil` the build gives the bundled
 * `ws`: byte for byte what RFC 6455 §5.3 says, at every length, offset and alignment, and in the
 * built service (`node dist/main.js`, built by `npm test`) on the wire in both directions.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { assemble, WS_MASK_KERNEL } from "../scripts/assemble-wasm.js";
import { Resampler } from "../src/audio/resampler.js";
import { parseWav } from "../src/audio/wav.js";
import { mask, unmask } from "../src/net/ws-mask.js";
import { WS_MASK_KERNEL_BASE64 } from "../src/net/ws-mask-kernel.js";
import { startFakeRealtime, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { MAIN_JS, spawnService, waitFor, type ServiceChild } from "./reliability/harness.js";
import { TestSatellite } from "./satellite-helpers.js";

const TOKEN = "mask-test-token-0123456789abcdef";

/** The definition, a byte at a time: the first `length` bytes of `source`, masked with `key`. */
const masked = (source: Uint8Array, key: Uint8Array, length = source.length): Buffer =>
  Buffer.from(source.subarray(0, length).map((byte, i) => byte ^ key[i & 3]!));

describe("ws-mask", () => {
  it("is the committed assembly of src/net/ws-mask.wat", async () => {
    expect(Buffer.from(await assemble(WS_MASK_KERNEL)).toString("base64")).toBe(WS_MASK_KERNEL_BASE64);
  });

  it("masks like the definition at every length, output offset and source alignment", () => {
    // Up to a few vectors, a 1.3 KB append, and around and past the 64 KiB work area.
    const lengths = [...Array.from({ length: 70 }, (_, i) => i), 127, 1330, 65_535, 65_536, 65_537, 200_003];
    const placements = [
      { skew: 0, offset: 0 },
      { skew: 1, offset: 6 },
      { skew: 3, offset: 8 },
      { skew: 2, offset: 14 },
    ];
    for (const length of lengths) {
      for (const { skew, offset } of placements) {
        // The source starts `skew` bytes into a larger buffer and runs past `length`; so does the key.
        const source = randomBytes(length + skew + 5).subarray(skew);
        const sourceBefore = Buffer.from(source);
        const key = randomBytes(7).subarray(skew, skew + 4);
        const output = Buffer.alloc(offset + length + 3, 0xa5);
        mask(source, key, output, offset, length);
        const where = `length ${length}, skew ${skew}, offset ${offset}`;
        expect(output.subarray(offset, offset + length).equals(masked(source, key, length)), where).toBe(
          true,
        );
        // Nothing around the masked bytes is written, and the source is left as it was.
        expect(
          output.subarray(0, offset).every((b) => b === 0xa5),
          where,
        ).toBe(true);
        expect(
          output.subarray(offset + length).every((b) => b === 0xa5),
          where,
        ).toBe(true);
        expect(source.equals(sourceBefore), where).toBe(true);
      }
    }
  });

  it("unmasks in place, the inverse of masking; masks in place too", () => {
    for (const length of [0, 1, 5, 31, 32, 33, 640, 65_536, 100_001]) {
      const plain = randomBytes(length + 3).subarray(3);
      const key = randomBytes(4);
      const frame = masked(plain, key);
      unmask(frame, key);
      expect(frame.equals(plain), `length ${length}`).toBe(true);
      mask(frame, key, frame, 0, length);
      expect(frame.equals(masked(plain, key)), `length ${length}, in place`).toBe(true);
    }
  });
});

describe("ws-mask in the built service", () => {
  const dist = dirname(MAIN_JS);

  let fake: FakeRealtimeServer | undefined;
  let service: ServiceChild | undefined;
  let sat: TestSatellite | undefined;

  afterEach(async () => {
    sat?.close();
    await service?.stop();
    await fake?.close();
    fake = service = sat = undefined;
  });

  it("is what the bundled ws loads for bufferutil: nothing is looked up at run time", () => {
    if (!existsSync(MAIN_JS)) throw new Error("dist/main.js is missing: run `npm run build`");
    const chunks = readdirSync(dist)
      .filter((name) => name.endsWith(".js"))
      .map((name) => readFileSync(join(dist, name), "utf8"));
    const bundled = chunks.join("\n");
    // ws's `require("bufferutil")` was resolved by the build (build.ts's alias)...
    expect(bundled).toContain('"node_modules/ws/lib/buffer-util.js"');
    expect(bundled).not.toMatch(/require\("bufferutil"\)/);
    // ...to this module: nothing else in the service imports it.
    expect(bundled).toContain(WS_MASK_KERNEL_BASE64);
  });

  it("every audio byte crosses intact: the satellite's masked frames in, the masked appends out", async () => {
    fake = await startFakeRealtime({ apiKey: "sk-mask-test" });
    service = await spawnService({
      openai: { api_key: "sk-mask-test", base_url: fake.url, pool_size: 0 },
      satellites: { token: TOKEN },
      listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0 },
      wyoming: { enabled: false },
      log_level: "warning",
    });

    // Two seconds of speech in 20 ms frames (640 bytes: ws unmasks them with ws-mask in the service).
    const speech = parseWav(readFileSync(new URL("./fixtures/audio/living_room_16k.wav", import.meta.url)));
    const frames: Int16Array[] = [];
    for (let at = 0; at + 320 <= Math.min(speech.samples.length, 32_000); at += 320)
      frames.push(speech.samples.slice(at, at + 320));
    sat = await TestSatellite.connect(service.satelliteUrl);
    await sat.hello({ token: TOKEN, turn: "client" });
    sat.send({ type: "turn.start" });
    for (const f of frames) sat.sendAudio(Buffer.from(f.buffer, f.byteOffset, f.byteLength));
    sat.send({ type: "turn.end" });
    // The conversation's connection (the service may have opened another first) commits the turn.
    const upstream = await waitFor(
      () => fake!.connections.find((c) => c.all("input_audio_buffer.commit").length > 0),
      10_000,
      "the turn's commit upstream",
    );

    // The appends (1.3 KB of text each: ws masks them with ws-mask) hold the 24 kHz audio exactly.
    const sent = Buffer.concat(
      upstream.all("input_audio_buffer.append").map((e) => Buffer.from(e.audio, "base64")),
    );
    const resampler = new Resampler({ inRate: 16000, outRate: 24000 });
    const expected = Buffer.concat(
      frames.map((f) => {
        const out = resampler.process(f);
        return Buffer.from(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength));
      }),
    );
    resampler.dispose();
    expect(expected.length).toBeGreaterThan(90_000);
    expect(sent.subarray(0, expected.length).equals(expected)).toBe(true);
  });
});
