/**
 * Runtime choices made in the ingress UI that outlive a restart: which MCP servers are switched
 * on or off, and which firmware devices were allowed by address. Kept in `<dataDir>/state.json`, written atomically (temp file, fsync, rename) and
 * serialised, so a crash mid-write leaves either the old or the new file, never a torn one.
 */
import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import type { McpServerConfig } from "../config/model.js";
import type { Logger } from "../log.js";

export const STATE_FILE = "state.json";

/** A firmware device allowed in the ingress UI (it tried to connect from this address). */
export const AllowedDeviceSchema = z.object({
  id: z.string().regex(/^[a-zA-Z0-9_.:-]{1,64}$/),
  address: z.string().min(1).max(64),
  dialect: z.string().min(1).max(32),
});
export type AllowedDevice = z.infer<typeof AllowedDeviceSchema>;

const StateFileSchema = z.object({
  version: z.literal(1),
  servers: z.record(z.string(), z.object({ enabled: z.boolean() })).default({}),
  allowed_devices: z.array(AllowedDeviceSchema).optional(),
  /** "Answer with OpenVoice" chosen in the UI, by ESPHome device, with the option's value at that time. */
  esphome_take_over: z
    .record(z.string(), z.object({ take_over: z.boolean(), option: z.boolean() }))
    .optional(),
});
type StateFile = z.infer<typeof StateFileSchema>;

/** Applies enable/disable overrides to a server list (pure). Unlisted servers keep their config. */
export function applyServerOverrides(
  servers: readonly McpServerConfig[],
  overrides: ReadonlyMap<string, boolean>,
): McpServerConfig[] {
  return servers.map((s) => {
    const enabled = overrides.get(s.name);
    return enabled === undefined || enabled === s.enabled ? s : { ...s, enabled };
  });
}

export class RuntimeState {
  readonly #path: string;
  readonly #log: Logger | undefined;
  readonly #servers = new Map<string, boolean>();
  readonly #allowed = new Map<string, AllowedDevice>();
  readonly #takeOver = new Map<string, { take_over: boolean; option: boolean }>();
  #writing: Promise<void> = Promise.resolve();

  private constructor(path: string, logger?: Logger) {
    this.#path = path;
    this.#log = logger;
  }

  /**
   * Reads `<dataDir>/state.json`. A missing file is an empty state; an unreadable or invalid one is
   * logged, kept aside as `state.json.invalid` and treated as empty (the service still starts).
   */
  static async load(dataDir: string, logger?: Logger): Promise<RuntimeState> {
    const state = new RuntimeState(join(dataDir, STATE_FILE), logger);
    let text: string;
    try {
      text = await readFile(state.#path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return state;
      throw err;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const parsed = StateFileSchema.safeParse(json);
    if (!parsed.success) {
      logger?.warn({ path: state.#path }, "runtime state file is invalid; starting from the configuration");
      await rename(state.#path, `${state.#path}.invalid`).catch(() => undefined);
      return state;
    }
    for (const [name, s] of Object.entries(parsed.data.servers)) state.#servers.set(name, s.enabled);
    for (const d of parsed.data.allowed_devices ?? []) state.#allowed.set(d.address, d);
    for (const [name, t] of Object.entries(parsed.data.esphome_take_over ?? {})) state.#takeOver.set(name, t);
    return state;
  }

  get path(): string {
    return this.#path;
  }

  /** Enable/disable overrides by server name. */
  get serverOverrides(): ReadonlyMap<string, boolean> {
    return this.#servers;
  }

  /** The runtime override for `name`, or undefined when the configuration decides. */
  serverEnabled(name: string): boolean | undefined {
    return this.#servers.get(name);
  }

  /**
   * At startup: applies the toggles to the configured servers and forgets every toggle the
   * configuration now agrees with, so a later edit of the configuration decides again. Persists
   * when something was forgotten. Toggles of servers missing from `servers` are kept.
   */
  async reconcile(servers: readonly McpServerConfig[]): Promise<McpServerConfig[]> {
    let forgot = false;
    for (const s of servers)
      if (this.#servers.get(s.name) === s.enabled) {
        this.#servers.delete(s.name);
        forgot = true;
      }
    if (forgot) await this.#persist();
    return applyServerOverrides(servers, this.#servers);
  }

  /**
   * Records a toggle and persists it. Writes are serialised in call order; the promise resolves
   * once this change (and every earlier one) is on disk, and rejects when this write failed.
   */
  setServerEnabled(name: string, enabled: boolean): Promise<void> {
    this.#servers.set(name, enabled);
    return this.#persist();
  }

  /** Drops the override of `name` (the configuration decides again) and persists. */
  clearServer(name: string): Promise<void> {
    this.#servers.delete(name);
    return this.#persist();
  }

  /** Firmware devices allowed in the ingress UI, by address. */
  get allowedDevices(): readonly AllowedDevice[] {
    return [...this.#allowed.values()];
  }

  /** Records an allowed firmware device (replacing one at the same address) and persists it. */
  allowDevice(device: AllowedDevice): Promise<void> {
    this.#allowed.set(device.address, device);
    return this.#persist();
  }

  /**
   * Whether OpenVoice answers ESPHome device `name`: the UI's choice while the option still has the value
   * it had when the choice was made, else the option (`option`, false when unset).
   */
  esphomeTakeOver(name: string, option: boolean): boolean {
    const t = this.#takeOver.get(name);
    return t !== undefined && t.option === option ? t.take_over : option;
  }

  /** Records the UI's "Answer with OpenVoice" choice for `name` against the option's current value. */
  setEsphomeTakeOver(name: string, takeOver: boolean, option: boolean): Promise<void> {
    this.#takeOver.set(name, { take_over: takeOver, option });
    return this.#persist();
  }

  #persist(): Promise<void> {
    const snapshot: StateFile = {
      version: 1,
      servers: Object.fromEntries(
        [...this.#servers].sort(([a], [b]) => a.localeCompare(b)).map(([n, e]) => [n, { enabled: e }]),
      ),
      ...(this.#allowed.size === 0 ? {} : { allowed_devices: [...this.#allowed.values()] }),
      ...(this.#takeOver.size === 0 ? {} : { esphome_take_over: Object.fromEntries(this.#takeOver) }),
    };
    const next = this.#writing.catch(() => undefined).then(() => this.#write(snapshot));
    this.#writing = next;
    return next;
  }

  async #write(snapshot: StateFile): Promise<void> {
    const dir = join(this.#path, "..");
    await mkdir(dir, { recursive: true });
    const tmp = `${this.#path}.${process.pid}.tmp`;
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(snapshot, null, 2)}\n`, "utf8");
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, this.#path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      this.#log?.error({ err, path: this.#path }, "could not save runtime state");
      throw err;
    }
  }
}
