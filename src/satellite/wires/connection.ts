/**
 * What every wire adapter shares: one `SatelliteConnection` per socket. It applies the frame
 * limits (size, rate, bad frames), keeps the socket alive, opens the `SatelliteCore` once the wire's
 * handshake names the device, forwards the core's reply audio and errors, and tears everything down
 * exactly once. A wire subclass parses its frames into core intents (`onText`/`onBinary`) and turns
 * core events into its frames; it alone knows its format.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import type { ApprovalQueue } from "../../approvals/queue.js";
import { SATELLITE_ERRORS, type SatelliteErrorCode } from "../../errors.js";
import type { Logger } from "../../log.js";
import type { Metrics, WIRE_DIALECTS } from "../../metrics.js";
import type { ConversationSource } from "../../realtime/conversation.js";
import type { SatelliteAuth, TokenMatch } from "../auth.js";
import { SatelliteCore, type CoreSession, type SatelliteState } from "../core.js";
import { TokenBucket, type SatelliteLimits } from "../limits.js";
import type { SatelliteLink, SatelliteSocketHandler } from "./link.js";

/** The wire a connection speaks: protocol v1 or one of the firmware dialects. */
export type WireName = (typeof WIRE_DIALECTS)[number];

/** What every connection needs from the service. */
export interface SatelliteDeps {
  conversations: ConversationSource;
  approvals: ApprovalQueue;
  auth: SatelliteAuth;
  logger: Logger;
  metrics: Metrics;
  limits: SatelliteLimits;
  /** `satellites.conversation_idle_s`: a conversation ends after this long without speech. */
  conversationIdleS: number;
  /** Monotonic milliseconds; injectable for tests. */
  now?: () => number;
  /** The ingress talk page: its conversations count as the device `talk`. */
  talkPage?: boolean;
}

export interface ConnectionEvents {
  /** The handshake named the device and the core is open. */
  ready: [{ clientId: string }];
  /** Emitted exactly once, after the socket is gone and the conversation ended. */
  closed: [];
}

/** Reply audio kept on a firmware device ahead of its play head: their buffers are small (≤ 300 ms). */
export const FIRMWARE_LEAD_MS = 200;

/** A text frame as a JSON object with a string `type`, or null (dialect frames are validated by each wire). */
export function parseTyped(text: string): ({ type: string } & Record<string, unknown>) | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return null;
  const type = (raw as { type?: unknown }).type;
  return typeof type === "string" ? (raw as { type: string } & Record<string, unknown>) : null;
}

/** The device as the handshake named it, and the audio/turn shape it speaks. */
export interface DeviceSession extends Omit<CoreSession, "sendBuffer"> {
  name?: string | undefined;
}

export abstract class SatelliteConnection
  extends EventEmitter<ConnectionEvents>
  implements SatelliteSocketHandler
{
  readonly sessionId = randomUUID();
  abstract readonly wire: WireName;
  protected readonly link: SatelliteLink;
  protected readonly deps: SatelliteDeps;
  protected readonly limits: SatelliteLimits;
  protected readonly now: () => number;
  protected log: Logger;
  #core: SatelliteCore | null = null;
  #device: DeviceSession | null = null;
  readonly #frameBucket: TokenBucket;
  readonly #byteBucket: TokenBucket;
  #badFrames: number[] = [];
  #handshakeTimer: NodeJS.Timeout | null = null;
  #pingTimer: NodeJS.Timeout | null = null;
  #pongTimer: NodeJS.Timeout | null = null;
  /** Gives back this connection's place under its device token's cap. */
  #releaseToken: (() => void) | null = null;
  #closed = false;

  constructor(link: SatelliteLink, deps: SatelliteDeps) {
    super();
    this.link = link;
    this.deps = deps;
    this.limits = deps.limits;
    this.now = deps.now ?? (() => performance.now());
    this.log = deps.logger.child({ satellite_session: this.sessionId });
    const t = this.now();
    this.#frameBucket = new TokenBucket(this.limits.framesPerSecond, this.limits.frameBurst, t);
    this.#byteBucket = new TokenBucket(this.limits.bytesPerSecond, this.limits.byteBurst, t);
  }

  /** The device id once ready (kept after close). */
  get clientId(): string | null {
    return this.#device?.satelliteId ?? null;
  }

  /** The device's display name, if its handshake gave one. */
  get name(): string | undefined {
    return this.#device?.name;
  }

  get state(): SatelliteState | null {
    return this.#closed ? null : (this.#core?.state ?? null);
  }

  /** True once the connection has shut down (`closed` has been or is being emitted). */
  get closed(): boolean {
    return this.#closed;
  }

  /** The open core; null before the handshake and after close. */
  protected get core(): SatelliteCore | null {
    return this.#closed ? null : this.#core;
  }

  // ── socket events (SatelliteSocketHandler) ───────────────────────────────────────────────

  handleText(text: string, byteLength = Buffer.byteLength(text)): void {
    if (!this.#admit(byteLength)) return;
    this.onText(text);
  }

  handleBinary(data: Buffer): void {
    if (!this.#admit(data.byteLength)) return;
    this.onBinary(data);
  }

  handlePong(): void {
    if (this.#pongTimer !== null) clearTimeout(this.#pongTimer);
    this.#pongTimer = null;
  }

  handleClosed(): void {
    void this.teardown("satellite disconnected");
  }

  internalError(err: unknown): void {
    this.log.error({ err }, "satellite connection failed");
    this.fail("internal", "internal error", true);
  }

  /** Server-side end (shutdown, replaced by a newer connection): the wire's goodbye, then close. */
  async end(reason: string, code = 1001): Promise<void> {
    if (this.#closed) return;
    this.farewell(reason);
    this.link.close(code, reason);
    await this.teardown(reason);
  }

  // ── what a wire implements ─────────────────────────────────────────────────────────────────

  /** A text frame within the limits. */
  protected abstract onText(text: string): void;
  /** A binary frame within the limits. */
  protected abstract onBinary(data: Buffer): void;
  /** The text frame that tells the device about an error, or null when the wire has none. */
  protected abstract errorFrame(code: SatelliteErrorCode, message: string, fatal: boolean): string | null;
  /** Sent just before a server-side close (`end`); may send nothing. */
  protected abstract farewell(reason: string): void;

  // ── for wires ────────────────────────────────────────────────────────────────────────────

  /**
   * Counts this connection against its token's cap (`maxConnectionsPerDeviceToken`, device tokens
   * only) until teardown. Beyond the cap: `too_many_connections`, closed, and false. Call it once,
   * right after the token is verified.
   */
  protected admitToken(match: TokenMatch): boolean {
    if (this.#closed || this.#releaseToken !== null) return !this.#closed;
    const release = this.deps.auth.claimConnection(match, this.limits.maxConnectionsPerDeviceToken);
    if (release === null) {
      this.fail(
        "too_many_connections",
        `this device token already has ${this.limits.maxConnectionsPerDeviceToken} open connections`,
      );
      return false;
    }
    this.#releaseToken = release;
    return true;
  }

  /** Fails with `timeoutCode` unless `open` is called within `ms`. */
  protected awaitHandshake(ms: number, timeoutCode: SatelliteErrorCode = "hello_timeout"): void {
    this.#handshakeTimer = setTimeout(() => this.fail(timeoutCode), ms);
  }

  /**
   * The handshake named the device: opens the core. `subscribe` attaches the wire's handlers to the
   * core and sends its greeting; then keepalive starts and `ready` is emitted.
   */
  protected open(device: DeviceSession, subscribe: (core: SatelliteCore) => void): SatelliteCore | null {
    if (this.#closed || this.#core !== null) return this.core;
    if (this.#handshakeTimer !== null) clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = null;
    this.#device = device;
    this.log = this.deps.logger.child({
      satellite: device.satelliteId,
      satellite_session: this.sessionId,
      wire: this.wire,
    });
    const core = new SatelliteCore(
      this.deps,
      {
        ...device,
        device: this.deps.talkPage
          ? { id: "talk", route: "talk" }
          : { id: device.satelliteId, route: this.wire === "v1" ? "v1" : "dialect" },
        sendBuffer: () => this.link.bufferedAmount,
      },
      this.log,
    );
    this.#core = core;
    core.on("audio", (frame) => {
      if (!this.#closed) this.link.sendBinary(frame);
    });
    core.on("error", ({ code, message, close }) => {
      if (close) this.fail(code, message, true);
      else this.sendError(code, message);
    });
    this.deps.metrics.satellitesConnected.inc();
    this.deps.metrics.satellitesByDialect.inc({ dialect: this.wire });
    subscribe(core);
    this.#startKeepalive();
    this.log.info(
      { name: device.name, audio: device.audio, turn: device.turn, wire: this.wire },
      "satellite ready",
    );
    this.emit("ready", { clientId: device.satelliteId });
    return core;
  }

  /** Sends a text frame; closes with `slow_consumer` when the device has stopped reading. */
  protected sendText(text: string): void {
    if (this.#closed) return;
    if (this.link.bufferedAmount > this.limits.sendBufferCloseBytes) {
      this.fail("slow_consumer", `send buffer at ${this.link.bufferedAmount} bytes`);
      return;
    }
    this.link.sendText(text);
  }

  /** Counts the error and sends the wire's error frame (if it has one); the connection stays. */
  protected sendError(code: SatelliteErrorCode, message?: string, fatal?: boolean): void {
    this.deps.metrics.errors.inc({ code });
    const frame = this.errorFrame(
      code,
      message ?? SATELLITE_ERRORS[code].message,
      fatal ?? SATELLITE_ERRORS[code].fatal,
    );
    if (frame !== null && !this.#closed) this.link.sendText(frame);
  }

  /** A frame the wire could not use: an error, and a close after too many within the window. */
  protected badFrame(code: "bad_message" | "bad_audio", message: string): void {
    const now = this.now();
    this.#badFrames = this.#badFrames.filter((t) => now - t < this.limits.badFrameWindowMs);
    this.#badFrames.push(now);
    if (this.#badFrames.length > this.limits.maxBadFrames) {
      this.fail(
        code,
        `${message} (more than ${this.limits.maxBadFrames} bad frames in ${this.limits.badFrameWindowMs / 1000} s)`,
        true,
      );
      return;
    }
    this.sendError(code, message);
  }

  /** Microphone audio off the wire: whole PCM16 samples go to the core, anything else is a bad frame. */
  protected micAudio(data: Buffer): void {
    if (data.byteLength % 2 !== 0)
      return this.badFrame("bad_audio", `frame of ${data.byteLength} bytes is not whole PCM16 samples`);
    if (data.byteLength === 0) return;
    this.core?.audioIn(data);
  }

  /**
   * Sends a fatal error and closes with the registry's close code (`force` makes a normally
   * non-fatal code fatal, e.g. repeated bad frames).
   */
  protected fail(code: SatelliteErrorCode, message?: string, force = false): void {
    if (this.#closed) return;
    this.log.warn({ code }, message ?? SATELLITE_ERRORS[code].message);
    this.sendError(code, message, force ? true : undefined);
    this.link.close(SATELLITE_ERRORS[code].status, code);
    void this.teardown(code);
  }

  protected async teardown(reason: string): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#handshakeTimer !== null) clearTimeout(this.#handshakeTimer);
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    if (this.#pongTimer !== null) clearTimeout(this.#pongTimer);
    this.#handshakeTimer = this.#pingTimer = this.#pongTimer = null;
    this.#releaseToken?.();
    this.#releaseToken = null;
    const core = this.#core;
    if (core !== null) {
      this.deps.metrics.satellitesConnected.dec();
      this.deps.metrics.satellitesByDialect.dec({ dialect: this.wire });
      await core.close(reason);
    }
    this.emit("closed");
  }

  // ── limits & keepalive ─────────────────────────────────────────────────────────────────────

  /** Size and rate limits shared by every frame. False when the frame must be ignored. */
  #admit(bytes: number): boolean {
    if (this.#closed) return false;
    if (bytes > this.limits.maxFrameBytes) {
      this.fail("frame_too_large", `frame of ${bytes} bytes; the limit is ${this.limits.maxFrameBytes}`);
      return false;
    }
    const now = this.now();
    if (!this.#frameBucket.take(1, now) || !this.#byteBucket.take(bytes, now)) {
      this.fail("rate_limited");
      return false;
    }
    return true;
  }

  #startKeepalive(): void {
    this.#pingTimer = setInterval(() => {
      if (this.#pongTimer !== null) return;
      this.#pongTimer = setTimeout(() => {
        this.log.warn("no pong in time; terminating the socket");
        this.link.terminate();
        void this.teardown("keepalive timeout");
      }, this.limits.pongTimeoutMs);
      this.link.ping();
    }, this.limits.pingIntervalMs);
  }
}
