/**
 * The ESPHome voice devices the service knows (listed in the options, found in Home Assistant's
 * configuration): one API connection each, kept up with a capped backoff (a device that comes back is
 * served again within 10 s), and for each device whether OpenVoice answers its voice assistant.
 *
 * Taking a device over disables its `assist_satellite` entity in Home Assistant (which then lets go of
 * the voice assistant), and re-sends the subscribe until the device's configuration answer proves this
 * connection owns it (`probeVoiceOwner`); giving it back unsubscribes and enables the entity again. The
 * owner is a named state (`openvoice`, `other`, `unknown`); each change is logged once. Keys are never
 * logged nor shown.
 */
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { VoiceFeature, type DeviceConnection, type VoiceOwner } from "./api/index.js";
import type { AnnounceOutcome, EsphomeAdmin, EsphomeDeviceView } from "./admin.js";
import { DeviceTimers } from "./timers.js";
import { VoiceHost, type VoiceHostDeps } from "./voice-host.js";

/** A device to connect to, from the options or from Home Assistant's configuration. */
export interface EsphomeDeviceSpec {
  /** The `name` option; else the node name from the device's DeviceInfo once connected. */
  name?: string;
  host: string;
  port: number;
  encryptionKey?: string;
  /** The `take_over` option (false when unset). */
  takeOver?: boolean;
  source: "options" | "home_assistant";
  /** The device's `assist_satellite` entity in Home Assistant, when known. */
  satelliteEntityId?: string;
}

/** Enables and disables Home Assistant entities (`config/entity_registry/update`). */
export interface EntityControl {
  setEntityDisabled(entityId: string, disabled: boolean): Promise<unknown>;
}

export interface TakeOverStore {
  esphomeTakeOver(name: string, option: boolean): boolean;
  setEsphomeTakeOver(name: string, takeOver: boolean, option: boolean): Promise<void>;
}

export interface DeviceManagerOptions {
  connect: (o: {
    host: string;
    port: number;
    encryptionKey?: string;
    clientInfo: string;
    logger: Logger;
  }) => Promise<DeviceConnection>;
  probe: (
    c: DeviceConnection,
    o?: { timeoutMs?: number; deviceHasWakeWords?: boolean },
  ) => Promise<VoiceOwner>;
  state: TakeOverStore;
  entities?: EntityControl;
  voice: Omit<VoiceHostDeps, "logger">;
  clientInfo: string;
  logger: Logger;
  metrics: Metrics;
  /** Waits between reconnect attempts; the last repeats. Default 0.5, 1, 2, 4, 8 s. */
  backoffMs?: number[];
  /** Subscribe + probe rounds before a take-over gives up. Default 15. */
  ownershipRounds?: number;
  ownershipRoundMs?: number;
  /** After the rounds, how often a device someone else owns is asked again. Default 5 s. */
  ownershipRetryMs?: number;
}

const DEFAULT_BACKOFF_MS = [500, 1000, 2000, 4000, 8000];

/** One device and its connection, as a state with a name. */
type Link =
  | { status: "connecting" }
  | { status: "offline"; error: string }
  | { status: "connected"; conn: DeviceConnection; host: VoiceHost | null }
  | { status: "ignored" };

class ManagedDevice {
  readonly spec: EsphomeDeviceSpec;
  name: string;
  link: Link = { status: "connecting" };
  owner: VoiceOwner = "unknown";
  voice: boolean | null = null;
  error: string | null = null;
  hasWakeWords = false;
  /** The Assist satellite entity was disabled by this take-over (done once until given back). */
  entityDisabled = false;
  /** Serialises take-over changes of this device. */
  change: Promise<void> = Promise.resolve();
  wake: (() => void) | null = null;
  /** The device's timers while it is taken over: they outlive a connection (a reconnect keeps them). */
  timers: DeviceTimers | null = null;

  constructor(spec: EsphomeDeviceSpec) {
    this.spec = spec;
    // Until the device names itself: its address (a host may serve several ports).
    this.name = spec.name ?? (spec.port === 6053 ? spec.host : `${spec.host}_${spec.port}`);
  }
}

export class EsphomeDevices implements EsphomeAdmin {
  readonly #o: DeviceManagerOptions;
  readonly #log: Logger;
  readonly #devices: ManagedDevice[] = [];
  #closed = false;

  constructor(o: DeviceManagerOptions) {
    this.#o = o;
    this.#log = o.logger;
  }

  /** Starts connecting to every device; never rejects (failures show in `list()`). */
  start(specs: readonly EsphomeDeviceSpec[]): void {
    for (const spec of specs) {
      const d = new ManagedDevice(spec);
      this.#devices.push(d);
      void this.#run(d);
    }
  }

  list(): EsphomeDeviceView[] {
    return this.#devices
      .filter((d) => d.link.status !== "ignored")
      .map((d) => {
        const link = d.link;
        const host = link.status === "connected" ? link.host : null;
        return {
          name: d.name,
          host: d.spec.host,
          port: d.spec.port,
          source: d.spec.source,
          voice: d.voice === true,
          connected: link.status === "connected",
          owner: d.owner === "unknown" ? null : d.owner,
          take_over: this.#takeOver(d),
          phase: link.status === "connected" ? (host?.phase ?? "idle") : "offline",
          error: link.status === "offline" ? link.error : d.error,
          last_turn: host?.lastTurn ?? null,
        };
      });
  }

  /** Speaks `text` on a taken-over, connected device; resolves once the device reports it played. */
  async announce(name: string, text: string): Promise<AnnounceOutcome> {
    const d = this.#find(name);
    if (!d) return { ok: false, code: "unknown_device", message: `no ESPHome voice device named "${name}"` };
    const link = d.link;
    if (link.status !== "connected" || !link.host) {
      const message = !this.#takeOver(d)
        ? `OpenVoice does not answer ${d.name}'s voice assistant: turn on "Answer with OpenVoice" first`
        : (d.error ?? (link.status === "offline" ? link.error : `${d.name} is not connected`));
      return { ok: false, code: "not_taken_over", message };
    }
    try {
      await link.host.announce(text);
      return { ok: true };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      return { ok: false, code: "announce_failed", message: `${d.name}: ${message}` };
    }
  }

  /**
   * Records the UI's choice for `name` (kept in /data, it wins until the option changes) and applies it;
   * resolves with the device once it is taken over or given back (or why not is in its `error`), or
   * null for an unknown device.
   */
  async setTakeOver(name: string, takeOver: boolean): Promise<EsphomeDeviceView | null> {
    const d = this.#find(name);
    if (!d) return null;
    await this.#o.state.setEsphomeTakeOver(d.name, takeOver, d.spec.takeOver ?? false);
    await this.#serial(d, () => this.#apply(d));
    return this.list().find((v) => v.name === d.name) ?? null;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(
      this.#devices.map(async (d) => {
        d.wake?.();
        d.timers?.dispose();
        const link = d.link;
        if (link.status !== "connected") return;
        await link.host?.close();
        link.conn.close();
      }),
    );
  }

  // ── connection ──────────────────────────────────────────────────────────────────────────────

  #find(name: string): ManagedDevice | undefined {
    return this.#devices.find((d) => d.name === name && d.link.status !== "ignored");
  }

  #takeOver(d: ManagedDevice): boolean {
    return this.#o.state.esphomeTakeOver(d.name, d.spec.takeOver ?? false);
  }

  async #run(d: ManagedDevice): Promise<void> {
    const backoff = this.#o.backoffMs ?? DEFAULT_BACKOFF_MS;
    let attempt = 0;
    const log = this.#log.child({ device: d.name });
    while (!this.#closed) {
      let conn: DeviceConnection;
      try {
        conn = await this.#o.connect({
          host: d.spec.host,
          port: d.spec.port,
          ...(d.spec.encryptionKey ? { encryptionKey: d.spec.encryptionKey } : {}),
          clientInfo: this.#o.clientInfo,
          logger: log,
        });
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        if (d.link.status !== "offline" || d.link.error !== error)
          log.warn(`ESPHome device not connected: ${error}`);
        d.link = { status: "offline", error };
        await this.#pause(d, backoff[Math.min(attempt++, backoff.length - 1)]!);
        continue;
      }
      attempt = 0;
      if (this.#closed) return conn.close();
      const closed = new Promise<string>((resolve) => conn.once("close", ({ reason }) => resolve(reason)));
      if ((conn.info.voiceFeatures & VoiceFeature.VOICE_ASSISTANT) === 0) {
        log.info({ node: conn.info.name }, "ESPHome device has no voice assistant; ignored");
        d.link = { status: "ignored" };
        conn.close();
        return;
      }
      d.name = d.spec.name ?? conn.info.name;
      d.voice = true;
      d.link = { status: "connected", conn, host: null };
      this.#o.metrics.esphomeConnected.set({ device: d.name }, 1);
      this.#log.info({ device: d.name }, "ESPHome voice device connected");
      void this.#serial(d, () => this.#apply(d));
      const reason = await closed;
      const link = d.link;
      if (link.status === "connected") await link.host?.close();
      this.#o.metrics.esphomeConnected.set({ device: d.name }, 0);
      d.link = { status: "offline", error: `the connection ended (${reason})` };
      this.#setOwner(d, "unknown");
      if (this.#closed) return;
      this.#log.info({ device: d.name, reason }, "ESPHome voice device disconnected");
      await this.#pause(d, backoff[0]!);
    }
  }

  #pause(d: ManagedDevice, ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        d.wake = null;
        resolve();
      }
      d.wake = done;
    });
  }

  #serial(d: ManagedDevice, fn: () => Promise<void>): Promise<void> {
    const next = d.change.then(fn, fn).catch((err: unknown) => {
      this.#log.error({ err, device: d.name }, "ESPHome take-over step failed");
    });
    d.change = next;
    return next;
  }

  // ── ownership ───────────────────────────────────────────────────────────────────────────────

  /** Brings the device to what the take-over choice says. */
  async #apply(d: ManagedDevice): Promise<void> {
    const link = d.link;
    if (link.status !== "connected") return;
    if (this.#takeOver(d)) return this.#takeOverNow(d, link);
    if (link.host || d.entityDisabled) await this.#giveBack(d, link);
    else {
      d.error = null;
      this.#setOwner(d, await this.#o.probe(link.conn, { deviceHasWakeWords: d.hasWakeWords }));
    }
  }

  async #takeOverNow(d: ManagedDevice, link: Extract<Link, { status: "connected" }>): Promise<void> {
    const entity = d.spec.satelliteEntityId;
    let entityProblem: string | null = null;
    if (entity && this.#o.entities && !d.entityDisabled) {
      try {
        await this.#o.entities.setEntityDisabled(entity, true);
        d.entityDisabled = true;
        this.#log.info({ device: d.name, entity }, "Assist satellite entity disabled in Home Assistant");
      } catch (err) {
        entityProblem = `could not disable ${entity} in Home Assistant: ${err instanceof Error ? err.message : String(err)}`;
      }
    }
    const rounds = this.#o.ownershipRounds ?? 15;
    let owner: VoiceOwner = "unknown";
    for (let i = 0; i < rounds && !this.#closed && d.link === link && this.#takeOver(d); i++) {
      link.conn.subscribeVoice(true);
      owner = await this.#o.probe(link.conn, { deviceHasWakeWords: d.hasWakeWords });
      this.#setOwner(d, owner);
      if (owner === "openvoice") break;
      await new Promise((r) => setTimeout(r, this.#o.ownershipRoundMs ?? 1000));
    }
    if (d.link !== link || !this.#takeOver(d) || this.#closed) return;
    const hint = entity
      ? `check that ${entity} is disabled in Home Assistant`
      : "disable its Assist satellite entity in Home Assistant (Settings → Devices & services → ESPHome)";
    const error =
      owner === "openvoice"
        ? entityProblem
        : owner === "other"
          ? `Home Assistant still owns the voice assistant of ${d.name} (or another client does): ${hint}`
          : // A device without wake words answers every client empty: it cannot be told apart, so it is served.
            `OpenVoice could not confirm it owns the voice assistant of ${d.name}; if Home Assistant still answers it, ${hint}`;
    if (error !== null && error !== d.error) this.#log.warn({ device: d.name, owner }, error);
    d.error = error;
    if (owner !== "other")
      link.host ??= new VoiceHost(
        d.name,
        link.conn,
        { ...this.#o.voice, logger: this.#log.child({ device: d.name }) },
        this.#timersOf(d),
      );
    if (owner === "openvoice") return;
    // Keep asking, slowly: the other client may let go later (Home Assistant reloading the entry).
    const timer = setTimeout(() => {
      if (d.link === link && this.#takeOver(d) && !this.#closed) void this.#serial(d, () => this.#apply(d));
    }, this.#o.ownershipRetryMs ?? 5000);
    timer.unref();
  }

  /** The device's timers, created once; their events go to whatever connection the device has now. */
  #timersOf(d: ManagedDevice): DeviceTimers {
    d.timers ??= new DeviceTimers({
      onEvent: (e) => {
        const link = d.link;
        if (link.status === "connected") return link.conn.sendTimerEvent(e);
        this.#log.warn(
          { device: d.name, timer: e.timerId, type: e.type },
          "timer event lost: the device is offline",
        );
      },
    });
    return d.timers;
  }

  async #giveBack(d: ManagedDevice, link: Extract<Link, { status: "connected" }>): Promise<void> {
    link.conn.subscribeVoice(false);
    d.entityDisabled = false;
    await link.host?.close();
    link.host = null;
    d.timers?.dispose();
    d.timers = null;
    d.error = null;
    this.#setOwner(d, "unknown");
    const entity = d.spec.satelliteEntityId;
    if (entity && this.#o.entities) {
      try {
        await this.#o.entities.setEntityDisabled(entity, false);
      } catch (err) {
        d.error = `could not enable ${entity} in Home Assistant again: ${err instanceof Error ? err.message : String(err)}`;
      }
    }
    this.#log.info({ device: d.name }, "ESPHome voice assistant given back to Home Assistant");
  }

  #setOwner(d: ManagedDevice, owner: VoiceOwner): void {
    if (owner === "openvoice") d.hasWakeWords = true;
    if (d.owner === owner) return;
    d.owner = owner;
    this.#log.info({ device: d.name, owner }, "voice assistant owner");
  }
}
