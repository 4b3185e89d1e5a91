/**
 * The ESPHome devices Home Assistant knows, read from its configuration folder (DESIGN §11 "Where Home
 * Assistant keeps the key"; `esphome.discover`, `esphome.ha_config_dir`).
 *
 * Home Assistant's `Store` files are `{version, minor_version, key, data}`:
 * - `.storage/core.config_entries`: `data.entries[]` with `entry_id`, `domain`, `title`, `data`,
 *   `unique_id`, `disabled_by`; the `esphome` domain's `data` carries `host`, `port`, `noise_psk` (the
 *   base64 encryption key, absent or empty without encryption) and `device_name`; `unique_id` is the MAC.
 * - `.storage/core.entity_registry`: `data.entities[]` with `entity_id`, `platform`, `config_entry_id`,
 *   `disabled_by`: a voice device has one `assist_satellite.*` entity of platform `esphome`.
 *
 * Reading is tolerant: a missing folder or file, unreadable JSON or odd entries give fewer devices and a
 * problem in words, never an exception. `noise_psk` is a secret: log only what {@link describeDevice} returns.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { ESPHOME_DEFAULT_PORT } from "../config/model.js";

export interface HaEsphomeDevice {
  /** The config entry's id. */
  readonly entryId: string;
  /** The entry's title as Home Assistant shows it (usually the friendly name). */
  readonly title: string;
  readonly host: string;
  readonly port: number;
  /** Base64 encryption key; undefined when the device runs without encryption. Secret. */
  readonly noisePsk?: string;
  /** The ESPHome node name (`data.device_name`), when Home Assistant recorded it. */
  readonly deviceName?: string;
  /** `unique_id` of the entry: the device's MAC address. */
  readonly macAddress?: string;
  /** The user or an integration disabled the whole entry: Home Assistant does not connect to it. */
  readonly entryDisabled: boolean;
  /** The voice assistant's `assist_satellite` entity; undefined for a device without one. */
  readonly satellite?: { readonly entityId: string; readonly disabledBy: string | null };
}

export interface HaEsphomeDiscovery {
  readonly devices: HaEsphomeDevice[];
  /** What could not be read, in words (empty when everything was read). */
  readonly problems: string[];
}

const CONFIG_ENTRIES = ".storage/core.config_entries";
const ENTITY_REGISTRY = ".storage/core.entity_registry";

const StoreFile = z.object({ data: z.unknown() });
const ConfigEntries = z.object({ entries: z.array(z.unknown()) });
const EsphomeEntry = z.object({
  entry_id: z.string().min(1),
  domain: z.literal("esphome"),
  title: z.string().default(""),
  unique_id: z.string().nullable().optional(),
  disabled_by: z.string().nullable().optional(),
  data: z.object({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(ESPHOME_DEFAULT_PORT),
    noise_psk: z.string().nullable().optional(),
    device_name: z.string().nullable().optional(),
  }),
});
const EntityRegistry = z.object({ entities: z.array(z.unknown()) });
const SatelliteEntity = z.object({
  entity_id: z.string().startsWith("assist_satellite."),
  platform: z.literal("esphome"),
  config_entry_id: z.string(),
  disabled_by: z.string().nullable().optional(),
});

const isEsphome = (e: unknown): boolean =>
  typeof e === "object" && e !== null && (e as { domain?: unknown }).domain === "esphome";

/** The devices in already-parsed store files (pure). `entityRegistry` undefined: not available. */
export function esphomeDevicesFrom(configEntries: unknown, entityRegistry: unknown): HaEsphomeDiscovery {
  const problems: string[] = [];
  const store = StoreFile.safeParse(configEntries);
  const entries = store.success ? ConfigEntries.safeParse(store.data.data) : undefined;
  if (!entries?.success)
    return { devices: [], problems: [`${CONFIG_ENTRIES} has no list of entries (data.entries)`] };

  const satellites = new Map<string, { entityId: string; disabledBy: string | null }>();
  if (entityRegistry !== undefined) {
    const reg = StoreFile.safeParse(entityRegistry);
    const entities = reg.success ? EntityRegistry.safeParse(reg.data.data) : undefined;
    if (!entities?.success) problems.push(`${ENTITY_REGISTRY} has no list of entities (data.entities)`);
    else
      for (const raw of entities.data.entities) {
        const e = SatelliteEntity.safeParse(raw);
        if (e.success && !satellites.has(e.data.config_entry_id))
          satellites.set(e.data.config_entry_id, {
            entityId: e.data.entity_id,
            disabledBy: e.data.disabled_by ?? null,
          });
      }
  }

  const devices: HaEsphomeDevice[] = [];
  entries.data.entries.filter(isEsphome).forEach((raw, i) => {
    const e = EsphomeEntry.safeParse(raw);
    if (!e.success) {
      const id = (raw as { entry_id?: unknown }).entry_id;
      problems.push(
        `ESPHome entry ${typeof id === "string" ? id : `#${i + 1}`} skipped: ` +
          e.error.issues.map((x) => `${x.path.join(".")} ${x.message}`).join("; "),
      );
      return;
    }
    const { data } = e.data;
    const satellite = satellites.get(e.data.entry_id);
    devices.push({
      entryId: e.data.entry_id,
      title: e.data.title,
      host: data.host,
      port: data.port,
      ...(data.noise_psk ? { noisePsk: data.noise_psk } : {}),
      ...(data.device_name ? { deviceName: data.device_name } : {}),
      ...(e.data.unique_id ? { macAddress: e.data.unique_id } : {}),
      entryDisabled: e.data.disabled_by !== null && e.data.disabled_by !== undefined,
      ...(satellite ? { satellite } : {}),
    });
  });
  return { devices, problems };
}

/** Reads `<configDir>/.storage/…`. Never rejects. */
export async function readHaEsphomeDevices(configDir: string): Promise<HaEsphomeDiscovery> {
  const entries = await readStore(configDir, CONFIG_ENTRIES);
  if ("problem" in entries) return { devices: [], problems: [entries.problem] };
  const registry = await readStore(configDir, ENTITY_REGISTRY);
  const found = esphomeDevicesFrom(entries.json, "json" in registry ? registry.json : undefined);
  return "problem" in registry
    ? { devices: found.devices, problems: [registry.problem, ...found.problems] }
    : found;
}

/** A device for logs and the UI: everything but the key. */
export function describeDevice(d: HaEsphomeDevice): Record<string, unknown> {
  return {
    entryId: d.entryId,
    title: d.title,
    host: d.host,
    port: d.port,
    encrypted: d.noisePsk !== undefined,
    satellite: d.satellite?.entityId ?? null,
  };
}

async function readStore(dir: string, file: string): Promise<{ json: unknown } | { problem: string }> {
  const path = join(dir, file);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      return {
        problem:
          file === CONFIG_ENTRIES
            ? `${path} is not there: is Home Assistant's configuration mapped at ${dir}?`
            : `${path} is not there`,
      };
    if (code === "EACCES") return { problem: `${path} cannot be read (permission denied)` };
    return { problem: `${path} cannot be read (${code ?? String(err)})` };
  }
  try {
    return { json: JSON.parse(text) as unknown };
  } catch {
    return { problem: `${path} is not valid JSON` };
  }
}
