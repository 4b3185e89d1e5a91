/**
 * WebSocket masking in WebAssembly (src/net/ws-mask.ts), the `bufferutil` the build gives the bundled
 * `ws`: byte for byte what RFC 6455 §5.3 says, at every length, offset and alignment, and in the
 * built service (`node dist/main.js`, built by `npm test`) on the wire in both directions.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { assemble, WS_MASK_KERNEL } from "../scripts/assemble-wasm.js";
import { Resampler } from "../src/audio/resampler.js";
import { parseWav } from "../src/audio/wav.js";
import { mask, unmask } from "../src/net/ws-mask.js";
import { WS_MASK_KERNEL_BASE64 } from "../src/net/ws-mask-kernel.js";
import { startFakeRealtime, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { parsePorts, waitFor } from "./reliability/harness.js";
import { TestSatellite } from "./satellite-helpers.js";

/** The definition, a byte at a time. */
function reference(
  source: Uint8Array,
  key: Uint8Array,
  output: Uint8Array,
  offset: number,
  length: number,
): void {
  for (let i = 0; i < length; i++) output[offset + i] = source[i]! ^ key[i & 3]!;
}

describe("ws-mask", () => {
  it("is the committed assembly of src/net/ws-mask.wat", async () => {
    expect(Buffer.from(await assemble(WS_MASK_KERNEL)).toString("base64")).toBe(WS_MASK_KERNEL_BASE64);
  });

  it("masks like the definition at every length, output offset and source alignment", () => {
    const lengths = [
      ...Array.from({ length: 70 }, (_, i) => i),
      127,
      1330,
      65_535,
      65_536,
      65_537,
      65_536 * 2 + 13,
      200_003,
    ];
    for (const length of lengths) {
      for (const [skew, offset] of [
        [0, 0],
        [1, 6],
        [3, 8],
        [2, 14],
      ] as const) {
        // The source starts `skew` bytes into a larger buffer; a key may sit at any offset too.
        const source = randomBytes(length + skew + 5).subarray(skew, skew + length + 5);
        const key = randomBytes(7).subarray(skew % 4, (skew % 4) + 4);
        const ours = Buffer.alloc(offset + length + 3, 0xa5);
        const theirs = Buffer.alloc(offset + length + 3, 0xa5);
        mask(source, key, ours, offset, length);
        reference(source, key, theirs, offset, length);
        // Nothing before `offset` or after `offset + length` is touched; the source is not either.
        expect(ours.equals(theirs), `length ${length}, skew ${skew}, offset ${offset}`).toBe(true);
      }
    }
  });

  it("unmasks in place, the inverse of masking", () => {
    for (const length of [0, 1, 5, 31, 32, 33, 640, 65_536, 100_001]) {
      const plain = randomBytes(length + 3).subarray(3);
      const key = randomBytes(4);
      const framed = Buffer.alloc(length);
      reference(plain, key, framed, 0, length);
      const before = Buffer.from(plain);
      unmask(framed, key);
      expect(framed.equals(before), `length ${length}`).toBe(true);
      // Masking a buffer onto itself works too.
      mask(framed, key, framed, 0, length);
      reference(before, key, before, 0, length);
      expect(framed.equals(before), `length ${length}, in place`).toBe(true);
    }
  });
});

describe("ws-mask in the built service", () => {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const dist = join(root, "dist");

  let dir: string | undefined;
  let child: ChildProcess | undefined;
  let fake: FakeRealtimeServer | undefined;
  let sat: TestSatellite | undefined;

  afterEach(async () => {
    sat?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((r) => child!.once("exit", r));
    }
    await fake?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = child = fake = sat = undefined;
  });

  it("is what the bundled ws loads for bufferutil: nothing is looked up at run time", () => {
    if (!existsSync(join(dist, "main.js"))) throw new Error("dist/main.js is missing: run `npm run build`");
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
    dir = await mkdtemp(join(tmpdir(), "openvoice-ws-mask-"));
    fake = await startFakeRealtime({ apiKey: "sk-mask-test" });
    const config = join(dir, "openvoice.yaml");
    await writeFile(
      config,
      [
        "openai:",
        "  api_key: sk-mask-test",
        `  base_url: ${fake.url}`,
        "  pool_size: 0",
        "listen: {host: 127.0.0.1, satellite_port: 0, ingress_port: 0}",
        "wyoming: {enabled: false}",
        "log_level: warning",
        "",
      ].join("\n"),
    );
    const portFile = join(dir, "ports.json");
    child = spawn(process.execPath, [join(dist, "main.js"), "--config", config, "--port-file", portFile], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, OPENVOICE_DATA_DIR: join(dir, "data") },
      stdio: "ignore",
    });
    const ports = await waitFor(
      () => readFile(portFile, "utf8").then(parsePorts, () => undefined),
      15_000,
      "the port file",
    );
    const { token } = (await (await fetch(`http://127.0.0.1:${ports.ingress}/api/satellite`)).json()) as {
      token: string;
    };

    // Two seconds of speech in 20 ms frames (640 bytes: ws unmasks them with ws-mask in the service).
    const speech = parseWav(readFileSync(new URL("./fixtures/audio/living_room_16k.wav", import.meta.url)));
    const frames: Int16Array[] = [];
    for (let at = 0; at + 320 <= Math.min(speech.samples.length, 32_000); at += 320)
      frames.push(speech.samples.slice(at, at + 320));
    sat = await TestSatellite.connect(`ws://127.0.0.1:${ports.satellite}/api/v1/satellite`);
    await sat.hello({ token, turn: "client" });
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
