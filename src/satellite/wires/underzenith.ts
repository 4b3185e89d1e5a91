/**
 * Dialect `underzenith`: the `realtime_voice_client` ESPHome component (DESIGN §10). The device
 * connects at boot to `/device/ws` with `Authorization: Bearer <token>` (checked before the upgrade),
 * sends `hello`, and gets `session_ready`. Turns are the device's: `ptt_start`, PCM16 24 kHz,
 * `ptt_stop` (its own VAD), and `cancel`. Down, the firmware matches substrings of OpenAI event
 * names (`session_ready`, `response.created`, `response.function_call`, `response.done`,
 * `"type":"error"`), so those events are sent compact, with only the keys its server sends.
 */
import { z } from "zod";
import type { SatelliteErrorCode } from "../../errors.js";
import type { TokenMatch } from "../auth.js";
import type { SatelliteCore } from "../core.js";
import { FIRMWARE_LEAD_MS, SatelliteConnection, parseTyped, type SatelliteDeps } from "./connection.js";
import type { SatelliteLink } from "./link.js";

export const UNDERZENITH_PATH = "/device/ws";

const HelloSchema = z.object({
  type: z.literal("hello"),
  protocol: z.literal(1),
  client_type: z.string().max(64).optional(),
  /** Any string, as the firmware and its own back-end take it (e.g. "Kitchen PE"): the device's id. */
  client_id: z.string().min(1).max(128),
  name: z.string().max(128).optional(),
});

export class UnderzenithWire extends SatelliteConnection {
  readonly wire = "underzenith";
  readonly #token: TokenMatch;

  /** @param token whom the upgrade's bearer token belongs to (a device token binds the hello's `client_id`). */
  constructor(link: SatelliteLink, deps: SatelliteDeps, token: TokenMatch) {
    super(link, deps);
    this.#token = token;
    this.awaitHandshake(this.limits.helloTimeoutMs);
    // A device token counts against its connection cap, as on protocol v1.
    this.admitToken(token);
  }

  protected onText(text: string): void {
    const msg = parseTyped(text);
    const core = this.core;
    if (core === null) {
      const hello = HelloSchema.safeParse(msg);
      if (!hello.success) return this.fail("bad_hello", "the first message must be hello (protocol 1)");
      return this.#onHello(hello.data);
    }
    if (msg === null) return this.badFrame("bad_message", "a text frame must be a JSON object with a type");
    switch (msg.type) {
      case "ptt_start":
        // A new press abandons the previous turn (its reply, even one not started yet), as the
        // firmware's own server does.
        return core.startTurn();
      case "ptt_stop":
        return core.endTurn();
      case "cancel":
        return core.cancel();
      case "hello":
        return this.badFrame("bad_message", "hello was already received");
      default:
        this.log.debug({ type: msg.type.slice(0, 64) }, "underzenith: message ignored");
    }
  }

  protected onBinary(data: Buffer): void {
    if (this.core === null) return this.fail("bad_hello", "binary frame before hello");
    this.micAudio(data);
  }

  #onHello(hello: z.infer<typeof HelloSchema>): void {
    if (this.#token.kind === "device" && this.#token.deviceId !== hello.client_id)
      return this.fail("unauthorized", "this token belongs to another device");
    const device = {
      satelliteId: hello.client_id,
      name: hello.name,
      turn: "client" as const,
      audio: { inRate: 24_000 as const, outRate: 24_000 as const },
      leadMs: FIRMWARE_LEAD_MS,
    };
    this.open(device, (core) => {
      this.#subscribe(core);
      this.#send({ type: "session_ready", client_id: hello.client_id });
    });
  }

  #subscribe(core: SatelliteCore): void {
    core.on("response.start", () => this.#send({ type: "response.created" }));
    core.on("response.end", () => {
      this.#send({ type: "response.output_audio.done" });
      this.#send({ type: "response.done" });
    });
    core.on("tool", (t) => {
      if (t.status === "started") this.#send({ type: "response.function_call_arguments.done", name: t.name });
    });
    core.on("transcript", (t) => {
      if (t.role === "assistant" && !t.final)
        this.#send({ type: "response.output_audio_transcript.delta", delta: t.text });
      else if (t.role === "user" && t.final)
        this.#send({ type: "conversation.item.input_audio_transcription.completed", transcript: t.text });
    });
  }

  #send(msg: { type: string } & Record<string, string>): void {
    this.sendText(JSON.stringify(msg));
  }

  protected errorFrame(code: SatelliteErrorCode, message: string): string {
    return JSON.stringify({ type: "error", error: { type: "server_error", code, message } });
  }

  /** The firmware reconnects by itself and says hello again; nothing to say before a close. */
  protected farewell(): void {}
}
