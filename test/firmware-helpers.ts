/**
 * Harness for the firmware dialect tests: the fake Realtime server → the real RealtimeEngine → the
 * firmware port (FirmwareListener) on 127.0.0.1:0, and a raw `ws` device client that records every
 * frame as the firmware sees it (text as the exact string, binary with its arrival time). Each
 * dialect test scripts that client the way its firmware behaves.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClientOptions } from "ws";
import { afterEach } from "vitest";
import { sine } from "./fake-realtime/audio.js";
import { RecordingSocket } from "./helpers/recording-socket.js";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { parseWav } from "../src/audio/wav.js";
import type { Dialect, SatelliteDevice } from "../src/config/model.js";
import type { Metrics } from "../src/metrics.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { SatelliteAuth } from "../src/satellite/auth.js";
import { sleep } from "./satellite-helpers.js";
import { FirmwareAccess } from "../src/satellite/firmware/access.js";
import { FirmwareListener } from "../src/satellite/firmware/listener.js";
import { resolveLimits } from "../src/satellite/limits.js";
import { SatelliteRegistry } from "../src/satellite/registry.js";
import { RuntimeState } from "../src/state/runtime-state.js";
import { RecordingTools, freshMetrics, makeConfig, silentLogger, tool } from "./fake-realtime/helpers.js";
import {
  startFakeRealtime,
  type FakeRealtimeOptions,
  type FakeRealtimeServer,
} from "./fake-realtime/server.js";

export const UZ_TOKEN = "underzenith-device-token-0123";
export const UZ_ID = "kitchen-voice-pe";
/** `satellites.token` of a harness whose devices have no token of their own. */
export const SHARED_TOKEN = "shared-satellite-token-0123456789";

const FIXTURES = new URL("./fixtures/audio/", import.meta.url);

/** A fixture WAV's samples (PCM16 mono). */
export async function fixture(name: string): Promise<Int16Array> {
  return parseWav(await readFile(new URL(name, FIXTURES))).samples;
}

export const pcmOf = (samples: Int16Array): Buffer =>
  Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);

export interface FirmwareHarness {
  fake: FakeRealtimeServer;
  engine: RealtimeEngine;
  tools: RecordingTools;
  metrics: Metrics;
  registry: SatelliteRegistry;
  access: FirmwareAccess;
  state: RuntimeState;
  dataDir: string;
  port: number;
  url(path?: string): string;
  close(): Promise<void>;
}

export interface HarnessOptions {
  dialects: Dialect[];
  /** Default: `kitchen` at 127.0.0.1 and the underzenith device with its token. */
  devices?: SatelliteDevice[];
  fake?: FakeRealtimeOptions;
  conversationIdleS?: number;
  /** Where the firmware port listens (loopback); default 127.0.0.1. */
  host?: "127.0.0.1" | "::1";
}

export async function startFirmware(opts: HarnessOptions): Promise<FirmwareHarness> {
  const fake = await startFakeRealtime({ audioSpeed: 8, ...opts.fake });
  const tools = new RecordingTools([tool("home_assistant", "HassTurnOn")]);
  const approvals = new ApprovalQueue({ timeoutS: 30 });
  const metrics = freshMetrics();
  const logger = silentLogger();
  const config = makeConfig(fake.url, {
    mcp_servers: [
      {
        name: "home_assistant",
        mode: "client",
        transport: "stdio",
        command: "unused",
        require_approval: "never",
      },
    ],
  });
  const engine = new RealtimeEngine({ config, tools, approvals, logger, metrics });
  const devices = opts.devices ?? [
    { id: "kitchen", address: "127.0.0.1" },
    { id: UZ_ID, token: UZ_TOKEN },
  ];
  const dataDir = await mkdtemp(join(tmpdir(), "openvoice-firmware-"));
  const state = await RuntimeState.load(dataDir, logger);
  const access = new FirmwareAccess({ devices, state, logger });
  const registry = new SatelliteRegistry();
  const tokens = devices.flatMap((d) => (d.token === undefined ? [] : [{ id: d.id, token: d.token }]));
  const listener = new FirmwareListener({
    dialects: opts.dialects,
    access,
    registry,
    deps: {
      conversations: engine,
      approvals,
      auth: new SatelliteAuth(tokens.length > 0 ? { devices: tokens } : { token: SHARED_TOKEN }),
      logger,
      metrics,
      limits: resolveLimits({ helloTimeoutMs: 3000 }),
      conversationIdleS: opts.conversationIdleS ?? 30,
    },
  });
  const host = opts.host ?? "127.0.0.1";
  const port = await listener.listen(host, 0);
  return {
    fake,
    engine,
    tools,
    metrics,
    registry,
    access,
    state,
    dataDir,
    port,
    url: (path = "/") => `ws://${host === "::1" ? "[::1]" : host}:${port}${path}`,
    async close() {
      await Promise.all(registry.all().map((c) => c.end("shutdown")));
      await listener.close();
      await engine.close();
      await fake.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Per-test clean-up of the firmware tests: what is made through it is stopped after each test. */
export interface FirmwareRig {
  /** Starts the harness (closed after the test, after its devices and microphones). */
  start(opts: HarnessOptions): Promise<FirmwareHarness>;
  /** Connects a device (terminated after the test); rejects like {@link DeviceSocket.connect}. */
  device(url: string, opts?: ClientOptions): Promise<DeviceSocket>;
  /** A microphone on `dev` (stopped after the test). */
  mic(dev: DeviceSocket, rate: number, frameBytes: number): Mic;
}

/** Call at module or `describe` level: registers the `afterEach` that stops what the rig made. */
export function useFirmwareRig(): FirmwareRig {
  const harnesses: FirmwareHarness[] = [];
  const devices: DeviceSocket[] = [];
  const mics: Mic[] = [];
  afterEach(async () => {
    for (const m of mics.splice(0)) m.stop();
    for (const d of devices.splice(0)) d.close();
    for (const h of harnesses.splice(0)) await h.close();
  });
  return {
    async start(opts) {
      const h = await startFirmware(opts);
      harnesses.push(h);
      return h;
    },
    async device(url, opts) {
      const dev = await DeviceSocket.connect(url, opts);
      devices.push(dev);
      return dev;
    },
    mic(dev, rate, frameBytes) {
      const mic = new Mic(dev, rate, frameBytes);
      mics.push(mic);
      return mic;
    },
  };
}

export interface Frame {
  at: number;
  text?: string;
  binary?: Buffer;
}

/** A device's socket: records frames; `connect` rejects with the HTTP status of a refused upgrade. */
export class DeviceSocket extends RecordingSocket<Frame> {
  /** Called on every frame (the firmware's reaction). */
  onFrame: (f: Frame) => void = () => undefined;

  private constructor(url: string, opts: ClientOptions) {
    super(url, { perMessageDeflate: false, ...opts }, 5000);
  }

  static async connect(url: string, opts: ClientOptions = {}): Promise<DeviceSocket> {
    const s = new DeviceSocket(url, opts);
    await s.opened((status) => new RefusedUpgrade(status));
    return s;
  }

  protected override record(buf: Buffer, isBinary: boolean, at: number): Frame {
    return isBinary ? { at, binary: buf } : { at, text: buf.toString() };
  }

  protected override recorded(f: Frame): void {
    this.onFrame(f);
  }

  protected override seen(): unknown {
    return this.texts();
  }

  sendText(text: string): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(text);
  }

  sendAudio(pcm: Buffer): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(pcm, { binary: true });
  }

  texts(): string[] {
    return this.frames.flatMap((f) => (f.text === undefined ? [] : [f.text]));
  }

  /** Waits for a text frame containing `needle` (the firmwares match substrings), after index `from`. */
  async waitText(needle: string, timeoutMs = 5000, from = 0): Promise<Frame> {
    return this.waitFor((f) => f.text?.includes(needle) === true, timeoutMs, from);
  }
}

export class RefusedUpgrade extends Error {
  constructor(readonly status: number) {
    super(`upgrade refused with HTTP ${status}`);
  }
}

export { sleep };

/**
 * Streams PCM16 at real time in frames of `frameBytes` (drift-corrected); stops early when
 * `until()` turns true (the firmware closed its microphone).
 */
export async function stream(
  dev: DeviceSocket,
  pcm: Buffer,
  rate: number,
  frameBytes: number,
  until: () => boolean = () => false,
): Promise<void> {
  const frameMs = (frameBytes / 2 / rate) * 1000;
  const start = performance.now();
  for (let i = 0, k = 0; i < pcm.length; i += frameBytes, k++) {
    if (until() || dev.closed) return;
    dev.sendAudio(pcm.subarray(i, i + frameBytes));
    const wait = start + (k + 1) * frameMs - performance.now();
    if (wait > 0) await sleep(wait);
  }
}

/**
 * How far ahead of real time the reply audio ran, in ms: for each frame, the audio received so far
 * minus the time since the first frame. A device that starts playing on the first frame holds at
 * most this much unplayed audio.
 */
export function maxLeadMs(frames: Frame[], rate: number): number {
  if (frames.length === 0) return 0;
  const t0 = frames[0]!.at;
  let sentMs = 0;
  let max = 0;
  for (const f of frames) {
    sentMs += (f.binary!.length / 2 / rate) * 1000;
    max = Math.max(max, sentMs - (f.at - t0));
  }
  return max;
}

/** Every downlink audio frame is whole PCM16 samples and fits the firmwares' 4096-byte buffers. */
export function framesFit(frames: Frame[]): boolean {
  return frames.every((f) => f.binary!.length > 0 && f.binary!.length % 2 === 0 && f.binary!.length <= 4096);
}

/** Frames of reply audio: a loud tone (the fake's VAD hears it as speech). */
export function loud(ms: number, rate: number): Buffer {
  return sine(ms, rate, 500, 0.5);
}

/**
 * A firmware's microphone: frames of `frameBytes` at real time while `open()` holds, the queued
 * speech first and silence after it (a room is never digitally silent for long, but the fake's VAD
 * only needs quiet). Drift-corrected; stops with `stop()` or when the socket closes.
 */
export class Mic {
  readonly #dev: DeviceSocket;
  readonly #frameBytes: number;
  readonly #frameMs: number;
  #queue: Buffer = Buffer.alloc(0);
  #timer: NodeJS.Timeout | null = null;
  #sentFrames = 0;
  #start = 0;
  open: () => boolean = () => true;
  /** Sees every frame sent (the firmware's own VAD). */
  onSend: (frame: Buffer) => void = () => undefined;

  constructor(dev: DeviceSocket, rate: number, frameBytes: number) {
    this.#dev = dev;
    this.#frameBytes = frameBytes;
    this.#frameMs = (frameBytes / 2 / rate) * 1000;
  }

  /** Queues speech; resolves once it has all been sent. */
  async say(pcm: Buffer): Promise<void> {
    this.#queue = Buffer.concat([this.#queue, pcm]);
    this.start();
    while (this.#queue.length > 0 && this.#timer !== null) await sleep(this.#frameMs);
  }

  start(): void {
    if (this.#timer !== null) return;
    this.#start = performance.now();
    this.#sentFrames = 0;
    const tick = (): void => {
      if (this.#dev.closed) return this.stop();
      const due = Math.floor((performance.now() - this.#start) / this.#frameMs) + 1;
      for (; this.#sentFrames < due; this.#sentFrames++) {
        const chunk = this.#queue.subarray(0, this.#frameBytes);
        this.#queue = this.#queue.subarray(chunk.length);
        const frame = Buffer.alloc(this.#frameBytes);
        chunk.copy(frame);
        if (!this.open()) continue;
        this.#dev.sendAudio(frame);
        this.onSend(frame);
      }
      this.#timer = setTimeout(tick, this.#frameMs / 2);
    };
    tick();
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
