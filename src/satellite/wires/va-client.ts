/**
 * Dialect `va_client`: the `va_client` ESPHome component (DESIGN §10). The device connects at boot,
 * sends `{"type":"start"}` and gets the compact `hello` it expects. From the wake word it streams
 * PCM16 16 kHz (server VAD) until the add-on says `thinking`; down come PCM16 24 kHz and
 * `{"type":"phase","value":…}`, matched as the substring `"value":"<phase>"`:
 *
 * - `listening` when the upstream hears speech (the firmware gives up 7 s after the wake word
 *   without it, sending `interrupt`); during playback it is the barge-in signal;
 * - `thinking` at the end of speech (the firmware closes its microphone), `replying` with the
 *   first reply audio, `idle` when the reply is over or the conversation ends.
 *
 * `{"type":"audio_done"}` follows the last audio frame of each reply. The
 * firmware up to v1.1.0 does not read it: it looks only for `"type":"error"`, `"hello"`,
 * `"request_follow_up"` and `"value":"<phase>"` in a text frame, so the frame is ignored there.
 *
 * `{"type":"interrupt"}` from the device stops the reply. The device is known by its address, or by
 * a bearer token when its firmware was built with one.
 */
import { z } from "zod";
import type { SatelliteErrorCode } from "../../errors.js";
import type { SatelliteCore, SatelliteState } from "../core.js";
import { FIRMWARE_LEAD_MS, SatelliteConnection, parseTyped, type SatelliteDeps } from "./connection.js";
import type { KnownDevice } from "../firmware/access.js";
import type { SatelliteLink } from "./link.js";

/** The greeting the firmware expects after `start`, key for key. */
const HELLO = JSON.stringify({
  type: "hello",
  audio_out: "pcm",
  interrupt_response: false,
  follow_up_ms: 0,
  follow_up_open_delay_ms: 700,
  wake_open_delay_ms: 700,
  playback_prebuffer_ms: 0,
});

/** After the last audio frame of a reply, whatever ended it. */
const AUDIO_DONE = JSON.stringify({ type: "audio_done" });

const StartSchema = z.object({
  type: z.literal("start"),
  mac: z.string().max(64).optional(),
  name: z.string().max(128).optional(),
});

type Phase = "listening" | "thinking" | "replying" | "idle";

export class VaClientWire extends SatelliteConnection {
  readonly wire = "va_client";
  readonly #device: KnownDevice;
  #phase: Phase = "idle";

  constructor(link: SatelliteLink, deps: SatelliteDeps, device: KnownDevice) {
    super(link, deps);
    this.#device = device;
    this.awaitHandshake(this.limits.helloTimeoutMs);
  }

  protected onText(text: string): void {
    const msg = parseTyped(text);
    const core = this.core;
    if (core === null) {
      const start = StartSchema.safeParse(msg);
      if (!start.success) return this.fail("bad_hello", 'the first message must be {"type":"start"}');
      return this.#onStart(start.data);
    }
    if (msg === null) return this.badFrame("bad_message", "a text frame must be a JSON object with a type");
    if (msg.type === "interrupt") return core.cancel();
    this.log.debug({ type: msg.type.slice(0, 64) }, "va_client: message ignored");
  }

  protected onBinary(data: Buffer): void {
    if (this.core === null) return this.fail("bad_hello", "binary frame before start");
    this.micAudio(data);
  }

  #onStart(start: z.infer<typeof StartSchema>): void {
    const device = {
      satelliteId: this.#device.id,
      name: this.#device.name ?? start.name,
      turn: "server_vad" as const,
      audio: { inRate: 16_000 as const, outRate: 24_000 as const },
      leadMs: FIRMWARE_LEAD_MS,
    };
    this.open(device, (core) => {
      this.#subscribe(core);
      this.sendText(HELLO);
    });
  }

  #subscribe(core: SatelliteCore): void {
    core.on("speech.start", () => this.#setPhase("listening"));
    core.on("state", (state) => this.#onState(state));
    core.on("response.end", () => this.sendText(AUDIO_DONE));
    core.on("end", () => this.#setPhase("idle"));
  }

  #onState(state: SatelliteState): void {
    switch (state) {
      case "thinking":
        return this.#setPhase("thinking");
      case "speaking":
        return this.#setPhase("replying");
      case "listening":
        // Back to listening after a reply or a cancel: this turn is over. (Barge-in has already
        // said `listening` on speech; the start of a conversation waits for speech to say it.)
        if (this.#phase === "thinking" || this.#phase === "replying") this.#setPhase("idle");
        return;
      case "idle":
      case "error":
        return this.#setPhase("idle");
    }
  }

  #setPhase(value: Phase): void {
    if (this.#phase === value) return;
    this.#phase = value;
    this.sendText(JSON.stringify({ type: "phase", value }));
  }

  protected errorFrame(code: SatelliteErrorCode, message: string): string {
    return JSON.stringify({ type: "error", code, message });
  }

  /** The firmware reconnects by itself and sends `start` again; nothing to say before a close. */
  protected farewell(): void {}
}
