/**
 * One ESPHome native API connection (DESIGN §11) over `esphome-client`, which keeps the frame helpers
 * (plaintext, Noise NNpsk0), the hello/ping/disconnect handshake and the message table. This file only
 * adapts it to `DeviceConnection`: domain events, typed connect failures, one `close`.
 *
 * Why wrap instead of writing the layers: the library is maintained against current firmware, has
 * no dependencies, and already distinguishes the failures we must put into words (a rejected Noise
 * handshake, a device that wants encryption). The library is imported on the first connect only, so
 * loading this module costs nothing at start-up.
 */
import { EventEmitter } from "node:events";
import type {
  EspHomeClient,
  DeviceInfo as LibDeviceInfo,
  EspHomeLogging,
  VoiceAssistantTimerEvent,
} from "esphome-client";
import type { Logger } from "../../log.js";
import { connectFailure } from "./failure.js";
import {
  DeviceConnectError,
  VoiceFeature,
  type AnnounceRequest,
  type DeviceConnection,
  type DeviceConnectionEvents,
  type DeviceInfo,
  type TimerEvent,
  type VoiceConfiguration,
  type VoiceEventType,
  type VoiceRequest,
} from "./types.js";

export interface ConnectOptions {
  host: string;
  port: number;
  /** Base64 of 32 bytes (the Noise PSK). Never logged. */
  encryptionKey?: string;
  /** Sent in HelloRequest; the device shows it as the client's name. */
  clientInfo: string;
  /** Bound on the whole connect (TCP, handshake, device info). Default 10 s. */
  timeoutMs?: number;
  logger: Logger;
}

const SUBSCRIBE_API_AUDIO = 1;
/** A device silent this long after our ping is gone (the library pings after `intervalMs` idle). */
const KEEPALIVE = { intervalMs: 15_000, stallTimeoutMs: 30_000 };
/** The library waits for AnnounceFinished itself; we only listen to the event, so its wait is long. */
const ANNOUNCE_WAIT_MS = 30 * 60_000;

/** Library debug lines (one per audio frame) go to trace; none carries the key. */
function libraryLog(logger: Logger): EspHomeLogging {
  return {
    debug: (m) => logger.trace(m),
    info: (m) => logger.debug(m),
    warn: (m) => logger.warn(m),
    error: (m) => logger.error(m),
  };
}

/** Feature bits, with the pre-1.10 `legacy_voice_assistant_version` mapped as aioesphomeapi does. */
function voiceFeatures(d: LibDeviceInfo): number {
  if (d.voiceAssistantFeatureFlags) return d.voiceAssistantFeatureFlags;
  if (d.legacyVoiceAssistantVersion === 1) return VoiceFeature.VOICE_ASSISTANT;
  if (d.legacyVoiceAssistantVersion === 2) return VoiceFeature.VOICE_ASSISTANT | VoiceFeature.SPEAKER;
  return 0;
}

function toInfo(d: LibDeviceInfo | null): DeviceInfo {
  return {
    name: d?.name ?? "",
    friendlyName: d?.friendlyName ?? "",
    macAddress: d?.macAddress ?? "",
    model: d?.model ?? "",
    esphomeVersion: d?.esphomeVersion ?? "",
    voiceFeatures: d ? voiceFeatures(d) : 0,
  };
}

class EsphomeDeviceConnection extends EventEmitter<DeviceConnectionEvents> implements DeviceConnection {
  readonly info: DeviceInfo;
  private closed = false;
  private readonly stop = new AbortController();
  private readonly disposers: Disposable[] = [];

  constructor(
    private readonly client: EspHomeClient,
    private readonly log: Logger,
  ) {
    super();
    this.info = toInfo(client.deviceInfo());
    this.disposers.push(
      client.on("voiceAssistantRequest", (r) => {
        const request: VoiceRequest = {
          start: r.start,
          conversationId: r.conversationId ?? "",
          flags: r.flags,
          audioSettings: {
            noiseSuppressionLevel: r.audioSettings?.noiseSuppressionLevel ?? 0,
            autoGain: r.audioSettings?.autoGain ?? 0,
            volumeMultiplier: r.audioSettings?.volumeMultiplier ?? 1,
          },
          wakeWordPhrase: r.wakeWordPhrase ?? "",
        };
        this.emit("voice.request", request);
      }),
      client.on("voiceAssistantAudio", (a) => this.emit("voice.audio", { pcm: a.data, end: a.end })),
      client.on("voiceAssistantAnnounceFinished", (success) =>
        this.emit("voice.announce_finished", { success }),
      ),
      client.on("disconnect", (reason) => this.finish(reason || "the device closed the connection")),
    );
  }

  subscribeVoice(subscribe: boolean): void {
    if (this.closed) return;
    if (subscribe) this.client.voiceAssistant.subscribe(SUBSCRIBE_API_AUDIO);
    else this.client.voiceAssistant.unsubscribe();
  }

  respondToRequest(r: { port: 0 } | { error: true }): void {
    if (this.closed) return;
    this.client.voiceAssistant.respondToRequest("error" in r ? { error: true } : { port: 0 });
  }

  sendVoiceEvent(type: VoiceEventType, data: Record<string, string> = {}): void {
    if (this.closed) return;
    const entries = Object.entries(data).map(([name, value]) => ({ name, value }));
    this.client.voiceAssistant.sendEvent(type, entries);
  }

  sendTimerEvent(e: TimerEvent): void {
    if (this.closed) return;
    this.client.voiceAssistant.sendTimerEvent({
      eventType: e.type as VoiceAssistantTimerEvent,
      timerId: e.timerId,
      name: e.name,
      totalSeconds: e.totalSeconds,
      secondsLeft: e.secondsLeft,
      isActive: e.isActive,
    });
  }

  announce(a: AnnounceRequest): void {
    if (this.closed) return;
    this.client.voiceAssistant
      .announce(
        {
          mediaId: a.mediaId,
          text: a.text,
          ...(a.preannounceMediaId !== undefined ? { preannounceMediaId: a.preannounceMediaId } : {}),
          ...(a.startConversation !== undefined ? { startConversation: a.startConversation } : {}),
        },
        { signal: this.stop.signal, timeoutMs: ANNOUNCE_WAIT_MS },
      )
      .catch(() => undefined);
  }

  async voiceConfiguration(timeoutMs = 5000): Promise<VoiceConfiguration> {
    if (this.closed) throw new Error("the connection is closed");
    const c = await this.client.voiceAssistant.configuration({
      refresh: true,
      timeoutMs,
      signal: this.stop.signal,
    });
    return {
      available: c.availableWakeWords.map((w) => ({
        id: w.id,
        wakeWord: w.wakeWord,
        trainedLanguages: [...w.trainedLanguages],
      })),
      active: [...c.activeWakeWords],
      maxActive: c.maxActiveWakeWords,
    };
  }

  close(): void {
    if (this.closed) return;
    this.client.disconnect();
    this.finish("closed by this service");
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.stop.abort();
    for (const d of this.disposers) d[Symbol.dispose]();
    this.log.debug({ reason }, "ESPHome connection closed");
    this.emit("close", { reason });
  }
}

/** ESPHome's `api: encryption: key:` is the base64 of exactly 32 bytes. */
export function isNoiseKey(key: string): boolean {
  return /^[A-Za-z0-9+/]{43}=$/.test(key) && Buffer.from(key, "base64").length === 32;
}

/**
 * Connects, runs the handshake (Noise when a key is given) and reads DeviceInfo. Rejects with a
 * `DeviceConnectError` only; the connection is not retried here (the caller owns the backoff).
 */
export async function connectDevice(o: ConnectOptions): Promise<DeviceConnection> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const where = `${o.host}:${o.port}`;
  const log = o.logger;
  if (o.encryptionKey !== undefined && !isNoiseKey(o.encryptionKey)) {
    throw new DeviceConnectError("bad_key", "the encryption key is not a valid 32-byte base64 key");
  }
  let client: EspHomeClient | undefined;
  try {
    const { EspHomeClient: Client } = await import("esphome-client");
    client = new Client({
      host: o.host,
      port: o.port,
      psk: o.encryptionKey ?? null,
      clientId: o.clientInfo,
      connectTimeoutMs: timeoutMs,
      handshakeTimeoutMs: timeoutMs,
      reconnect: false,
      keepAlive: KEEPALIVE,
      logger: libraryLog(log),
    });
    await client.connect();
  } catch (err) {
    client?.disconnect();
    const failure = connectFailure(err, where, timeoutMs);
    log.debug({ code: failure.code, err: failure.message }, "ESPHome connect failed");
    throw failure;
  }
  const conn = new EsphomeDeviceConnection(client, log);
  if (!conn.info.name) {
    conn.close();
    throw new DeviceConnectError("protocol", `${where} sent no device information`);
  }
  return conn;
}
