/**
 * The whole service (createApp + wireService) with ESPHome devices, against the fake Realtime server
 * and emulated devices on loopback; helpers shared by the esphome-*.test.ts files.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type App } from "../src/app.js";
import { parseWav } from "../src/audio/wav.js";
import { VoiceEvent } from "../src/esphome/api/index.js";
import type { Logger } from "../src/log.js";
import { ConfigSchema, type ConfigInput } from "../src/config/model.js";
import type { EsphomeDeviceView } from "../src/esphome/admin.js";
import type { EsphomeRuntimeOverrides } from "../src/esphome/runtime.js";
import { wireService, type Service } from "../src/service.js";
import { startEmulatedDevice, type EmulatedDevice, type EmulatorOptions } from "./esphome/emulator/index.js";
import { silentLogger } from "./fake-realtime/helpers.js";
import {
  startFakeRealtime,
  type FakeRealtimeOptions,
  type FakeRealtimeServer,
} from "./fake-realtime/server.js";

const FIXTURES = new URL("./fixtures/audio/", import.meta.url);

/** A whole answered run's voice events, in Home Assistant's order. */
export const FULL_RUN = [
  VoiceEvent.RUN_START,
  VoiceEvent.STT_START,
  VoiceEvent.STT_VAD_START,
  VoiceEvent.STT_VAD_END,
  VoiceEvent.STT_END,
  VoiceEvent.INTENT_START,
  VoiceEvent.INTENT_PROGRESS,
  VoiceEvent.INTENT_END,
  VoiceEvent.TTS_START,
  VoiceEvent.TTS_END,
  VoiceEvent.RUN_END,
];

/** A fixture WAV's PCM16 samples as bytes (the emulator's microphone takes 16 kHz). */
export async function fixturePcm(name: string): Promise<Buffer> {
  const wav = parseWav(await readFile(new URL(name, FIXTURES)));
  return Buffer.from(wav.samples.buffer, wav.samples.byteOffset, wav.samples.byteLength);
}

/** Speech then silence, so the upstream's VAD hears the end of it. */
export async function utterance(name = "kitchen_light_16k.wav", silenceMs = 1200): Promise<Buffer> {
  return Buffer.concat([await fixturePcm(name), Buffer.alloc(Math.round(16 * silenceMs) * 2)]);
}

export interface Harness {
  app: App;
  service: Service;
  fake: FakeRealtimeServer;
  ingress: string;
  /** `http://127.0.0.1:<satellite port>`. */
  satellite: string;
  dataDir: string;
  devices: EmulatedDevice[];
  /** GET /api/esphome. */
  list(): Promise<EsphomeDeviceView[]>;
  /** Polls GET /api/esphome until `pred` holds for the device named `name`. */
  waitDevice(
    name: string,
    pred: (d: EsphomeDeviceView) => boolean,
    timeoutMs?: number,
  ): Promise<EsphomeDeviceView>;
  post(path: string, body: unknown): Promise<{ status: number; json: unknown }>;
  close(): Promise<void>;
}

export async function startHarness(o: {
  devices?: EmulatorOptions[];
  /** Per emulated device (same order): the `esphome.devices[]` entry besides host and port. */
  entries?: Partial<NonNullable<NonNullable<ConfigInput["esphome"]>["devices"]>[number]>[];
  esphome?: Partial<ConfigInput["esphome"]>;
  fake?: FakeRealtimeOptions;
  overrides?: EsphomeRuntimeOverrides;
  config?: Partial<ConfigInput>;
  dataDir?: string;
  /** Default silent. */
  logger?: Logger;
}): Promise<Harness> {
  const fake = await startFakeRealtime(o.fake ?? {});
  const devices = await Promise.all((o.devices ?? [{}]).map((d) => startEmulatedDevice(d)));
  const dataDir = o.dataDir ?? (await mkdtemp(join(tmpdir(), "openvoice-esphome-")));
  const app = await createApp({
    config: ConfigSchema.parse({
      ...o.config,
      openai: { api_key: "sk-test", base_url: fake.url, pool_size: 1 },
      listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0 },
      mcp_servers: o.config?.mcp_servers ?? [],
      wyoming: { enabled: false },
      esphome: {
        discover: false,
        reply_format: "wav",
        ...o.esphome,
        devices: [
          ...(o.esphome?.devices ?? []),
          ...devices.map((d, i) => ({ host: d.host, port: d.port, ...o.entries?.[i] })),
        ],
      },
    }),
    env: {},
    logger: o.logger ?? silentLogger(),
    dataDir,
  });
  const service = await wireService(app, {
    esphome: { backoffMs: [200, 400, 800], ownershipRoundMs: 100, ownershipRounds: 10, ...o.overrides },
  });
  const ports = await app.listen();
  await service.esphome.started;
  const ingress = `http://127.0.0.1:${ports.ingressPort}`;
  const list = async (): Promise<EsphomeDeviceView[]> =>
    ((await (await fetch(`${ingress}/api/esphome`)).json()) as { devices: EsphomeDeviceView[] }).devices;
  const harness: Harness = {
    app,
    service,
    fake,
    ingress,
    satellite: `http://127.0.0.1:${ports.satellitePort}`,
    dataDir,
    devices,
    list,
    async waitDevice(name, pred, timeoutMs = 10_000) {
      const until = performance.now() + timeoutMs;
      let last: EsphomeDeviceView[] = [];
      while (performance.now() < until) {
        last = await list();
        const d = last.find((x) => x.name === name);
        if (d && pred(d)) return d;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`device ${name} not as expected: ${JSON.stringify(last)}`);
    },
    async post(path, body) {
      const res = await fetch(`${ingress}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: await res.json() };
    },
    async close() {
      await app.close();
      await Promise.all(devices.map((d) => d.close()));
      await fake.close();
      if (!o.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
  return harness;
}
