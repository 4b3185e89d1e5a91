/**
 * An emulated ESPHome voice satellite (a Voice PE by default) on 127.0.0.1, written from the
 * firmware's sources (esphome/esphome `components/api`, `voice_assistant`, `speaker/media_player`),
 * not from the client under test: it imports nothing from src/esphome/api.
 *
 * `api_connection.cpp` behaviour kept here: HelloRequest → HelloResponse (API 1.12), DeviceInfo,
 * ListEntities (none), ping, disconnect; voice messages from a connection that does not own the
 * voice assistant are ignored, except `VoiceAssistantConfigurationRequest`, which it answers empty.
 */
import net from "node:net";
import {
  EmulatedVoiceAssistant,
  type RecordedEvent,
  type RunRecord,
  type TimerRecord,
  type VaClient,
} from "./voice-assistant.js";
import { ApiWire } from "./wire.js";
import {
  Msg,
  clientHello,
  configurationResponse,
  decodeAnnounce,
  decodeEvent,
  decodeHello,
  decodeResponse,
  decodeSubscribe,
  decodeTimer,
  deviceInfoResponse,
  helloResponse,
  subscribeVoice,
} from "./messages.js";

export type { RunRecord, RecordedEvent, TimerRecord } from "./voice-assistant.js";
import type { DecoderGeneration, EmulatedMediaPlayer } from "./media-player.js";
export { fileTypeOf, INITIAL_BUFFER_MS, READ_TIMEOUT_MS, TRANSFER_BUFFER_BYTES } from "./media-player.js";

/** VOICE_ASSISTANT | API_AUDIO | TIMERS | ANNOUNCE | START_CONVERSATION: what a Voice PE reports. */
export const VOICE_PE_FLAGS = 1 | 4 | 8 | 16 | 32;
/** OHF-Voice/linux-voice-assistant `satellite.py`: the same five features (61). */
export const LINUX_VOICE_ASSISTANT_FLAGS = 1 | 4 | 16 | 32 | 8;

export interface EmulatorOptions {
  name?: string;
  macAddress?: string;
  /** base64 of 32 bytes: the device speaks Noise only. */
  encryptionKey?: string;
  /** Default 61, the Voice PE. */
  featureFlags?: number;
  /** Default the Voice PE's microWakeWord models; [] for a device without wake words. */
  wakeWords?: { id: string; wakeWord: string }[];
  /** A run streaming longer than this without STT_VAD_END is stopped (default 30 s). */
  maxListenMs?: number;
  /** The media player's read timeout (default 5 s, `CONNECTION_TIMEOUT_MS` of audio_reader.cpp). */
  readTimeoutMs?: number;
  /** Which firmware's paused decoder the media player models (default `current`). */
  decoderGeneration?: DecoderGeneration;
}

export interface OtherClient {
  readonly clientInfo: string;
  subscribe(on: boolean): void;
  close(): void;
}

export interface EmulatedDevice {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly name: string;
  /**
   * The wake word: from idle starts a run; during a run (a reply playing) stops it as the Voice PE does
   * (`voice_assistant.stop`) and resolves with that run's record. Resolves when the device is idle again.
   */
  wake(speech: Buffer, opts?: { followUp?: Buffer; conversationId?: string }): Promise<RunRecord>;
  /** The stop word: `voice_assistant.stop` during a run (the media player closes the HTTP stream). */
  stopWord(): void;
  /** Events the owner sent, in order, with receive time (performance.now()). */
  readonly events: RecordedEvent[];
  readonly timerEvents: TimerRecord[];
  /** Announcements played (media id, text, playback record). */
  readonly announcements: { mediaId: string; text: string; record: RunRecord }[];
  /** Which API connection (by its ClientInfo string) owns the voice assistant, or null. */
  readonly voiceOwner: string | null;
  /** The voice assistant's state (IDLE, STREAMING_RESPONSE, ...). */
  readonly state: string;
  /** API connections open now. */
  readonly connections: number;
  /** The media player: its `sound` event marks each stream's first sound. */
  readonly mediaPlayer: EmulatedMediaPlayer;
  /** Resolves when the voice assistant is idle. */
  idle(): Promise<void>;
  /** Drops every API connection (a Wi-Fi blip); the device keeps listening, clients may reconnect. */
  dropConnections(): void;
  /** A minimal second API client (Home Assistant) that subscribes to the voice assistant. */
  connectAsOtherClient(clientInfo?: string): Promise<OtherClient>;
  close(): Promise<void>;
}

const DEFAULT_WAKE_WORDS = [
  { id: "okay_nabu", wakeWord: "Okay Nabu" },
  { id: "hey_jarvis", wakeWord: "Hey Jarvis" },
  { id: "hey_mycroft", wakeWord: "Hey Mycroft" },
];

export async function startEmulatedDevice(o: EmulatorOptions = {}): Promise<EmulatedDevice> {
  const name = o.name ?? "home-assistant-voice-0a1b2c";
  const mac = o.macAddress ?? "20:F8:3B:0A:1B:2C";
  const psk = o.encryptionKey ? Buffer.from(o.encryptionKey, "base64") : undefined;
  if (psk && psk.length !== 32) throw new Error("encryptionKey must be base64 of 32 bytes");
  const wakeWords = o.wakeWords ?? DEFAULT_WAKE_WORDS;
  const active = wakeWords.slice(0, 1).map((w) => w.id);
  const va = new EmulatedVoiceAssistant(
    wakeWords[0]?.wakeWord ?? "",
    o.maxListenMs ?? 30_000,
    o.readTimeoutMs,
    o.decoderGeneration,
  );
  const sockets = new Set<net.Socket>();

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    const client: VaClient & { clientInfo: string } = {
      clientInfo: "",
      send: (type, payload) => wire.send(type, payload),
    };
    const isOwner = (): boolean => va.owner === client;
    const wire = new ApiWire(socket, {
      role: "server",
      ...(psk ? { psk } : {}),
      name,
      mac,
      onMessage: (type, payload) => {
        switch (type) {
          case Msg.HelloRequest:
            client.clientInfo = decodeHello(payload).clientInfo;
            return wire.send(Msg.HelloResponse, helloResponse(name));
          case Msg.ConnectRequest:
            return wire.send(Msg.ConnectResponse, Buffer.alloc(0));
          case Msg.DeviceInfoRequest:
            return wire.send(
              Msg.DeviceInfoResponse,
              deviceInfoResponse({
                name,
                friendlyName: "Home Assistant Voice 0a1b2c",
                macAddress: mac,
                model: "Home Assistant Voice PE",
                esphomeVersion: "2025.10.0",
                voiceFeatures: o.featureFlags ?? VOICE_PE_FLAGS,
              }),
            );
          case Msg.ListEntitiesRequest:
            return wire.send(Msg.ListEntitiesDoneResponse, Buffer.alloc(0));
          case Msg.PingRequest:
            return wire.send(Msg.PingResponse, Buffer.alloc(0));
          case Msg.DisconnectRequest:
            wire.send(Msg.DisconnectResponse, Buffer.alloc(0));
            socket.end();
            return;
          case Msg.SubscribeVoiceAssistantRequest:
            return va.subscription(client, decodeSubscribe(payload).subscribe);
          case Msg.VoiceAssistantConfigurationRequest:
            return wire.send(
              Msg.VoiceAssistantConfigurationResponse,
              configurationResponse(
                isOwner()
                  ? {
                      available: wakeWords.map((w) => ({ ...w, trainedLanguages: ["en"] })),
                      active,
                      maxActive: wakeWords.length > 0 ? 1 : 0,
                    }
                  : { available: [], active: [], maxActive: 0 },
              ),
            );
        }
        if (!isOwner()) return;
        switch (type) {
          case Msg.VoiceAssistantResponse:
            return va.onResponse(decodeResponse(payload));
          case Msg.VoiceAssistantEventResponse: {
            const e = decodeEvent(payload);
            return va.onEvent(e.type, e.data);
          }
          case Msg.VoiceAssistantTimerEventResponse:
            return va.onTimer(decodeTimer(payload));
          case Msg.VoiceAssistantAnnounceRequest:
            return va.onAnnounce(decodeAnnounce(payload));
        }
      },
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      sockets.delete(socket);
      if (isOwner()) va.clientGone();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;

  return {
    host: "127.0.0.1",
    port,
    name,
    wake: (speech, opts) => va.wake(speech, opts),
    stopWord: () => va.stopWord(),
    events: va.events,
    timerEvents: va.timerEvents,
    announcements: va.announcements,
    get voiceOwner() {
      return va.owner?.clientInfo ?? null;
    },
    get state() {
      return va.state;
    },
    get connections() {
      return sockets.size;
    },
    mediaPlayer: va.media,
    idle: () => va.idle(),
    dropConnections: () => {
      for (const s of sockets) s.destroy();
    },
    connectAsOtherClient: (clientInfo = "Home Assistant 2026.9.0") => otherClient(port, psk, clientInfo),
    close: async () => {
      va.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A second API client that says hello and subscribes to the voice assistant, as Home Assistant does. */
function otherClient(port: number, psk: Buffer | undefined, clientInfo: string): Promise<OtherClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", reject);
    socket.on("connect", () => {
      const wire: ApiWire = new ApiWire(socket, {
        role: "client",
        ...(psk ? { psk } : {}),
        onReady: () => wire.send(Msg.HelloRequest, clientHello(clientInfo)),
        onFailure: (reason) => reject(new Error(reason)),
        onMessage: (type) => {
          if (type === Msg.PingRequest) wire.send(Msg.PingResponse, Buffer.alloc(0));
          if (type === Msg.HelloResponse) {
            wire.send(Msg.SubscribeVoiceAssistantRequest, subscribeVoice(true));
            // The subscribe is processed in order with what follows; a ping round trip confirms it arrived.
            wire.send(Msg.PingRequest, Buffer.alloc(0));
          }
          if (type === Msg.PingResponse) {
            resolve({
              clientInfo,
              subscribe: (on) => wire.send(Msg.SubscribeVoiceAssistantRequest, subscribeVoice(on)),
              close: () => socket.destroy(),
            });
          }
        },
      });
    });
  });
}
