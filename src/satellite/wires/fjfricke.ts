/**
 * Dialect `fjfricke`: the `voice_assistant_websocket` ESPHome component (DESIGN §10). The device
 * connects when its wake word fires and streams PCM16 24 kHz at once, with no hello; the socket is
 * one conversation with server VAD. Down: PCM16 24 kHz binary, `{"type":"interrupt"}` to stop the
 * speaker (barge-in), and `{"type":"disconnect",…}` before the add-on closes, which keeps the
 * firmware from reconnecting; when OpenAI could not be had, the disconnect's message says why in
 * words. The device is known by its address (checked before the upgrade).
 */
import type { SatelliteErrorCode } from "../../errors.js";
import type { KnownDevice } from "../firmware/access.js";
import { FIRMWARE_LEAD_MS, SatelliteConnection, parseTyped, type SatelliteDeps } from "./connection.js";
import type { SatelliteLink } from "./link.js";

export class FjfrickeWire extends SatelliteConnection {
  readonly wire = "fjfricke";
  readonly #device: KnownDevice;
  /** Why OpenAI could not be had, in words, for the disconnect that follows. */
  #upstreamError: string | null = null;

  constructor(link: SatelliteLink, deps: SatelliteDeps, device: KnownDevice) {
    super(link, deps);
    this.#device = device;
    this.awaitHandshake(this.limits.helloTimeoutMs);
  }

  /** Microphone audio; the first frame opens the core (the firmware sends nothing before it). */
  protected onBinary(data: Buffer): void {
    if (this.core === null) this.#open();
    this.micAudio(data);
  }

  /** The firmware sends no text; `{"type":"interrupt"}` (its server's word for it) stops the reply. */
  protected onText(text: string): void {
    const msg = parseTyped(text);
    if (msg === null) return this.badFrame("bad_message", "a text frame must be a JSON object with a type");
    if (msg.type === "interrupt") {
      if (this.core === null) this.#open();
      return this.core?.cancel();
    }
    this.log.debug({ type: msg.type.slice(0, 64) }, "fjfricke: text frame ignored");
  }

  #open(): void {
    const device = {
      satelliteId: this.#device.id,
      name: this.#device.name,
      turn: "server_vad" as const,
      audio: { inRate: 24_000 as const, outRate: 24_000 as const },
      leadMs: FIRMWARE_LEAD_MS,
    };
    this.open(device, (core) => {
      core.on("clear", () => this.#send({ type: "interrupt" }));
      core.on("error", ({ code, message }) => {
        if (code === "upstream_unavailable") this.#upstreamError = message;
      });
      // The socket is the conversation: when it ends, say so (no reconnect) and close.
      core.on("end", ({ reason }) => void this.end(reason, 1000));
      core.on("state", (state) => {
        if (state === "error") void this.end("upstream_unavailable", 1011);
      });
    });
  }

  #send(msg: { type: string } & Record<string, string>): void {
    this.sendText(JSON.stringify(msg));
  }

  /** Fatal errors say `disconnect`, so the firmware stays idle instead of reconnecting in a loop. */
  protected errorFrame(code: SatelliteErrorCode, message: string, fatal: boolean): string {
    return JSON.stringify(
      fatal ? { type: "disconnect", message, reason: code } : { type: "error", code, message },
    );
  }

  protected farewell(reason: string): void {
    const message =
      reason === "upstream_unavailable" && this.#upstreamError !== null
        ? this.#upstreamError
        : reason === "idle"
          ? "conversation ended"
          : `conversation ended: ${reason}`;
    this.#send({ type: "disconnect", message, reason });
  }
}
