/**
 * What the ingress admin API asks of the ESPHome part (`/api/esphome…`). The ingress plugin depends on
 * this interface only, so the ESPHome code itself can load after the service listens.
 */
import type { LastTurn, VoicePhase } from "./voice-host.js";

/** What `GET /api/esphome` shows of a device. */
export interface EsphomeDeviceView {
  name: string;
  host: string;
  port: number;
  source: "options" | "home_assistant";
  /** The device said it has a voice assistant (false until it did). */
  voice: boolean;
  connected: boolean;
  owner: "openvoice" | "other" | null;
  take_over: boolean;
  phase: VoicePhase | "offline";
  /** Why the device is not served, in words, or null. */
  error: string | null;
  last_turn: LastTurn | null;
}

export type AnnounceOutcome =
  | { ok: true }
  | { ok: false; code: "unknown_device" | "not_taken_over" | "announce_failed"; message: string };

export interface EsphomeAdmin {
  /** Every voice device, keys never included. */
  list(): EsphomeDeviceView[];
  /**
   * Records and applies the "Answer with OpenVoice" choice; resolves with the device as it is after
   * the attempt, or null for an unknown device.
   */
  setTakeOver(name: string, takeOver: boolean): Promise<EsphomeDeviceView | null>;
  /** Speaks `text` on a taken-over device; resolves once the device reports it played. */
  announce(name: string, text: string): Promise<AnnounceOutcome>;
}
