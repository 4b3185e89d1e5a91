/**
 * Who may connect with a firmware that has no authentication of its own (`fjfricke`, `va_client`):
 * the devices of `satellites.devices` with an `address`, and those a person allowed in the ingress
 * UI (persisted in the runtime state). Every other address is refused before the upgrade and kept
 * in a short list the UI shows, with the dialect it most likely speaks.
 */
import type { Dialect, SatelliteDevice } from "../../config/model.js";
import type { Logger } from "../../log.js";
import type { AllowedDevice, RuntimeState } from "../../state/runtime-state.js";
import { normalizeAddress } from "../../net/address.js";

/** The device a connection belongs to. */
export interface KnownDevice {
  id: string;
  name?: string | undefined;
}

export interface RefusedDevice {
  address: string;
  dialect: Dialect;
  /** ISO times of the first and the last refused attempt. */
  firstSeen: string;
  lastSeen: string;
  attempts: number;
}

/** Refused addresses remembered for the UI; the oldest is forgotten beyond this. */
const REFUSED_MEMORY = 32;

export class FirmwareAccess {
  readonly #configured = new Map<string, KnownDevice>();
  readonly #state: Pick<RuntimeState, "allowedDevices" | "allowDevice">;
  readonly #log: Logger;
  readonly #refused = new Map<string, RefusedDevice>();

  constructor(opts: {
    devices: readonly SatelliteDevice[];
    state: Pick<RuntimeState, "allowedDevices" | "allowDevice">;
    logger: Logger;
  }) {
    for (const d of opts.devices)
      if (d.address !== undefined)
        this.#configured.set(normalizeAddress(d.address), { id: d.id, ...(d.name ? { name: d.name } : {}) });
    this.#state = opts.state;
    this.#log = opts.logger;
  }

  /** The device at `address`: configured first, then allowed in the UI; null when unknown. */
  deviceAt(address: string): KnownDevice | null {
    const configured = this.#configured.get(address);
    if (configured !== undefined) return configured;
    const allowed = this.#state.allowedDevices.find((d) => d.address === address);
    return allowed === undefined ? null : { id: allowed.id };
  }

  /** Notes a refused attempt for the UI. */
  refuse(address: string, dialect: Dialect): void {
    const now = new Date().toISOString();
    const seen = this.#refused.get(address);
    if (seen === undefined) {
      this.#log.warn(
        { address, dialect },
        `a device at ${address} tried to connect with the ${dialect} firmware`,
      );
      this.#refused.set(address, { address, dialect, firstSeen: now, lastSeen: now, attempts: 1 });
      if (this.#refused.size > REFUSED_MEMORY) this.#refused.delete(this.#refused.keys().next().value!);
      return;
    }
    seen.lastSeen = now;
    seen.dialect = dialect;
    seen.attempts++;
  }

  /** Refused devices, most recent first. */
  refused(): RefusedDevice[] {
    return [...this.#refused.values()].sort((a, b) => b.lastSeen.localeCompare(a.lastSeen));
  }

  /**
   * Allows a refused address from now on and persists it; resolves with the device, or null when
   * the address is not in the refused list.
   */
  async allow(address: string): Promise<AllowedDevice | null> {
    const refused = this.#refused.get(address);
    if (refused === undefined) return null;
    const device: AllowedDevice = {
      id: `${refused.dialect}-${address.replace(/[^a-zA-Z0-9_.:-]/g, "-")}`.slice(0, 64),
      address,
      dialect: refused.dialect,
    };
    await this.#state.allowDevice(device);
    this.#refused.delete(address);
    return device;
  }
}
