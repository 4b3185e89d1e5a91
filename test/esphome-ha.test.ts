/**
 * Home Assistant's side of the ESPHome route, through the whole service: devices discovered from a
 * configuration folder (host, port, Noise key, the Assist satellite entity), and taking a device over
 * and giving it back against a fake Home Assistant WebSocket API while a second API client plays Home
 * Assistant holding the voice assistant.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { startHarness, utterance, type Harness } from "./esphome-helpers.js";
import { startEmulatedDevice, type EmulatedDevice } from "./esphome/emulator/index.js";
import { startFakeHa, type FakeHa } from "./esphome/fake-ha.js";

const KEY = Buffer.alloc(32, 3).toString("base64");
const TOKEN = "ha-test-token";
const ENTITY = "assist_satellite.home_assistant_voice_0a1b2c_assist_satellite";

let h: Harness | undefined;
let fakeHa: FakeHa | undefined;
let dev: EmulatedDevice | undefined;
let dir: string | undefined;
afterEach(async () => {
  await h?.close();
  await fakeHa?.close();
  await dev?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  h = fakeHa = dev = dir = undefined;
});

/** Home Assistant's `.storage` files naming one ESPHome voice device and one plain sensor. */
async function haConfigFolder(device: EmulatedDevice): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "openvoice-ha-config-"));
  await mkdir(join(root, ".storage"));
  const entries = [
    {
      entry_id: "01VOICE",
      domain: "esphome",
      title: "Home Assistant Voice 0a1b2c",
      unique_id: "20:f8:3b:0a:1b:2c",
      disabled_by: null,
      data: { host: device.host, port: device.port, noise_psk: KEY, device_name: device.name },
    },
    {
      entry_id: "01PLUG",
      domain: "esphome",
      title: "Smart plug",
      disabled_by: null,
      data: { host: "127.0.0.1", port: 1, noise_psk: null, device_name: "smart-plug" },
    },
  ];
  const entities = [
    { entity_id: ENTITY, platform: "esphome", config_entry_id: "01VOICE", disabled_by: null },
    { entity_id: "switch.smart_plug", platform: "esphome", config_entry_id: "01PLUG", disabled_by: null },
  ];
  await writeFile(
    join(root, ".storage/core.config_entries"),
    JSON.stringify({ version: 1, minor_version: 5, key: "core.config_entries", data: { entries } }),
  );
  await writeFile(
    join(root, ".storage/core.entity_registry"),
    JSON.stringify({ version: 1, minor_version: 15, key: "core.entity_registry", data: { entities } }),
  );
  return root;
}

describe("ESPHome devices Home Assistant knows", () => {
  it("discovered from the configuration folder, taken over through the WebSocket API and given back", async () => {
    dev = await startEmulatedDevice({ encryptionKey: KEY });
    dir = await haConfigFolder(dev);
    fakeHa = await startFakeHa({ token: TOKEN, entities: { [ENTITY]: { disabled_by: null } } });
    // Home Assistant holds the voice assistant, and lets go when its entity is disabled.
    const ha = await dev.connectAsOtherClient("Home Assistant 2026.11.2");
    const haFake = fakeHa;
    const letGo = setInterval(() => {
      if (haFake.updates.some((u) => u.entity_id === ENTITY && u.disabled_by === "user")) {
        clearInterval(letGo);
        ha.subscribe(false);
      }
    }, 20);
    try {
      h = await startHarness({
        devices: [],
        config: { home_assistant: { url: fakeHa.url, token: TOKEN } },
        esphome: { discover: true, ha_config_dir: dir },
      });
      const found = await h.waitDevice(dev.name, (d) => d.connected);
      expect(found).toMatchObject({
        source: "home_assistant",
        host: dev.host,
        port: dev.port,
        take_over: false,
      });
      // The plain sensor has no Assist satellite entity: not a voice device, not connected to.
      expect((await h.list()).map((d) => d.name)).toEqual([dev.name]);
      expect(dev.voiceOwner).toBe("Home Assistant 2026.11.2");

      const on = await h.post(`/api/esphome/${dev.name}`, { take_over: true });
      expect(on.json).toMatchObject({ device: { owner: "openvoice", take_over: true, error: null } });
      expect(fakeHa.updates).toEqual([{ entity_id: ENTITY, disabled_by: "user" }]);
      expect(dev.voiceOwner).toMatch(/^OpenVoice MCP /);
      const run = await dev.wake(await utterance());
      expect(run.error).toBeNull();

      const off = await h.post(`/api/esphome/${dev.name}`, { take_over: false });
      expect(off.json).toMatchObject({ device: { take_over: false } });
      expect(fakeHa.updates.at(-1)).toEqual({ entity_id: ENTITY, disabled_by: null });
      await expect.poll(() => dev!.voiceOwner).toBeNull();
    } finally {
      clearInterval(letGo);
      ha.close();
    }
  });

  it("keys are never logged (trace level) nor shown by the admin API, discovered or listed", async () => {
    dev = await startEmulatedDevice({ encryptionKey: KEY });
    const listed = Buffer.alloc(32, 9).toString("base64");
    dir = await haConfigFolder(dev);
    const lines: string[] = [];
    const logger = createLogger({
      level: "trace",
      destination: { write: (line: string) => void lines.push(line) },
      format: "line",
    });
    h = await startHarness({
      devices: [{ encryptionKey: listed, name: "listed-voice" }],
      entries: [{ encryption_key: listed, take_over: true }],
      esphome: { discover: true, ha_config_dir: dir },
      logger,
    });
    await h.waitDevice(dev.name, (d) => d.connected);
    await h.waitDevice("listed-voice", (d) => d.owner === "openvoice");
    expect((await h.devices[0]!.wake(await utterance())).error).toBeNull();
    const shown: string[] = [];
    for (const path of ["/api/esphome", "/api/status", "/api/servers", "/api/satellite", "/api/cost"])
      shown.push(await (await fetch(`${h.ingress}${path}`)).text());
    shown.push(await (await fetch(`${h.ingress}/metrics`)).text());
    expect(lines.length).toBeGreaterThan(20);
    const forms = (k: string): string[] => [k, Buffer.from(k, "base64").toString("hex")];
    for (const key of [...forms(KEY), ...forms(listed)]) {
      expect(lines.join("\n")).not.toContain(key);
      expect(shown.join("\n")).not.toContain(key);
    }
  });

  it("a missing configuration folder is said in words; listed devices still work", async () => {
    h = await startHarness({ esphome: { discover: true, ha_config_dir: "/nonexistent/openvoice-test" } });
    const d = h.devices[0]!;
    await h.waitDevice(d.name, (x) => x.connected);
    expect(await h.list()).toHaveLength(1);
  });
});
