import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { describeDevice, esphomeDevicesFrom, readHaEsphomeDevices } from "../../src/esphome/ha-config.js";

const HA_DIR = fileURLToPath(new URL("../fixtures/homeassistant", import.meta.url));
const KEY_VOICE = "CzBVep/E6Q4zWH2ix+wRNluApcrvFDleg6jN8hc8YYY=";

describe("discovery from Home Assistant's configuration folder", () => {
  const temps: string[] = [];
  /** A copy of the fixture folder to break. */
  function copy(): string {
    const dir = mkdtempSync(join(tmpdir(), "ha-config-"));
    temps.push(dir);
    cpSync(HA_DIR, dir, { recursive: true });
    return dir;
  }
  afterEach(() => {
    for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("finds the esphome entries with host, port, key, node name, MAC and their assist_satellite entity", async () => {
    const { devices, problems } = await readHaEsphomeDevices(HA_DIR);
    expect(devices.map((d) => d.title)).toEqual([
      "Home Assistant Voice 0a1b2c",
      "Living Room Box",
      "Garage Door",
      "Old Atom Echo",
    ]);
    expect(devices[0]).toEqual({
      entryId: "01JCQ4VD8Y2ZK6H3W9R0T5M7PA",
      title: "Home Assistant Voice 0a1b2c",
      host: "192.168.1.20",
      port: 6053,
      noisePsk: KEY_VOICE,
      deviceName: "home-assistant-voice-0a1b2c",
      macAddress: "20:f8:3b:0a:1b:2c",
      entryDisabled: false,
      satellite: {
        entityId: "assist_satellite.home_assistant_voice_0a1b2c_assist_satellite",
        disabledBy: null,
      },
    });
    // already taken over: its satellite entity is disabled
    expect(devices[1]!.satellite).toEqual({
      entityId: "assist_satellite.living_room_box_assist_satellite",
      disabledBy: "user",
    });
    // no voice assistant, no encryption
    expect(devices[2]!.satellite).toBeUndefined();
    expect(devices[2]!.noisePsk).toBeUndefined();
    expect(devices[3]!.entryDisabled).toBe(true);
    expect(problems).toEqual([
      "ESPHome entry 01JE9BROKENENTRY0000000000 skipped: data.host Invalid input: expected string, received undefined",
    ]);
  });

  it("a missing folder, a missing registry and broken JSON give reasons, not exceptions", async () => {
    expect(await readHaEsphomeDevices("/nonexistent/homeassistant")).toEqual({
      devices: [],
      problems: [
        "/nonexistent/homeassistant/.storage/core.config_entries is not there: is Home Assistant's " +
          "configuration mapped at /nonexistent/homeassistant?",
      ],
    });

    const noRegistry = copy();
    rmSync(join(noRegistry, ".storage/core.entity_registry"));
    const partial = await readHaEsphomeDevices(noRegistry);
    expect(partial.devices).toHaveLength(4);
    expect(partial.devices.every((d) => d.satellite === undefined)).toBe(true);
    expect(partial.problems[0]).toBe(`${noRegistry}/.storage/core.entity_registry is not there`);

    const broken = copy();
    writeFileSync(join(broken, ".storage/core.config_entries"), '{"version": 1, "data": {"entr');
    expect(await readHaEsphomeDevices(broken)).toEqual({
      devices: [],
      problems: [`${broken}/.storage/core.config_entries is not valid JSON`],
    });
  });

  it("odd shapes are reported in words", () => {
    expect(esphomeDevicesFrom({ data: {} }, undefined).problems).toEqual([
      ".storage/core.config_entries has no list of entries (data.entries)",
    ]);
    const r = esphomeDevicesFrom(
      { data: { entries: [{ domain: "esphome", entry_id: "x", data: { host: "10.0.0.3" } }] } },
      { data: { nope: [] } },
    );
    expect(r.devices).toEqual([
      { entryId: "x", title: "", host: "10.0.0.3", port: 6053, entryDisabled: false },
    ]);
    expect(r.problems).toEqual([".storage/core.entity_registry has no list of entities (data.entities)"]);
  });

  it("describeDevice() leaves the key out", async () => {
    const { devices } = await readHaEsphomeDevices(HA_DIR);
    const shown = JSON.stringify(devices.map(describeDevice));
    expect(shown).not.toContain(KEY_VOICE);
    expect(shown).toContain('"encrypted":true');
  });
});
