/**
 * The ESPHome native API as the rest of the service sees it (DESIGN §11): the voice assistant's
 * messages in domain terms, with no wire detail. Pure: importing this costs nothing.
 */
import type { EventEmitter } from "node:events";
import { ESPHOME_CONNECT_ERRORS, type EsphomeConnectErrorCode } from "../../errors.js";

/** `VoiceAssistantEvent` of api.proto. */
export const VoiceEvent = {
  ERROR: 0,
  RUN_START: 1,
  RUN_END: 2,
  STT_START: 3,
  STT_END: 4,
  INTENT_START: 5,
  INTENT_END: 6,
  TTS_START: 7,
  TTS_END: 8,
  WAKE_WORD_START: 9,
  WAKE_WORD_END: 10,
  STT_VAD_START: 11,
  STT_VAD_END: 12,
  TTS_STREAM_START: 98,
  TTS_STREAM_END: 99,
  INTENT_PROGRESS: 100,
} as const;
export type VoiceEventType = (typeof VoiceEvent)[keyof typeof VoiceEvent];

/** `VoiceAssistantTimerEvent` of api.proto. */
export const TimerEventType = { STARTED: 0, UPDATED: 1, CANCELLED: 2, FINISHED: 3 } as const;

/** `VoiceAssistantFeature` bits of `DeviceInfoResponse.voice_assistant_feature_flags`; unknown bits are kept. */
export const VoiceFeature = {
  VOICE_ASSISTANT: 1,
  SPEAKER: 2,
  API_AUDIO: 4,
  TIMERS: 8,
  ANNOUNCE: 16,
  START_CONVERSATION: 32,
} as const;

/** `VoiceAssistantRequestFlag` bits of `VoiceAssistantRequest.flags`. */
export const VoiceRequestFlag = { USE_VAD: 1, USE_WAKE_WORD: 2 } as const;

export interface DeviceInfo {
  /** The ESPHome node name, e.g. `home-assistant-voice-0a1b2c`. */
  name: string;
  friendlyName: string;
  macAddress: string;
  model: string;
  esphomeVersion: string;
  /** `VoiceFeature` bits; 0 for a device without a voice assistant. */
  voiceFeatures: number;
}

export interface VoiceRequest {
  /** false: the device stops the run (pipeline error, `voice_assistant.stop` before TTS_END). */
  start: boolean;
  conversationId: string;
  flags: number;
  audioSettings: { noiseSuppressionLevel: number; autoGain: number; volumeMultiplier: number };
  wakeWordPhrase: string;
}

export interface VoiceConfiguration {
  available: { id: string; wakeWord: string; trainedLanguages: string[] }[];
  active: string[];
  maxActive: number;
}

export type ConnectFailure = EsphomeConnectErrorCode;

/**
 * A connection that did not come up. `message` is words a user understands: "the encryption key does
 * not match", "the device needs an encryption key", "cannot reach 192.168.1.20:6053 (ECONNREFUSED)".
 * It never contains the key.
 */
export class DeviceConnectError extends Error {
  readonly code: ConnectFailure;
  constructor(code: ConnectFailure, message?: string) {
    super(message ?? ESPHOME_CONNECT_ERRORS[code].message);
    this.name = "DeviceConnectError";
    this.code = code;
  }
}

export interface DeviceConnectionEvents {
  "voice.request": [VoiceRequest];
  /**
   * Microphone audio, PCM16 LE mono 16 kHz, frames of 1024 bytes (32 ms). `end` as the device sets it:
   * the Voice PE never sets it; it stops sending after STT_VAD_END.
   */
  "voice.audio": [{ pcm: Buffer; end: boolean }];
  "voice.announce_finished": [{ success: boolean }];
  /** Emitted exactly once, whoever closed. */
  close: [{ reason: string }];
}

export interface TimerEvent {
  type: number;
  timerId: string;
  name: string;
  totalSeconds: number;
  secondsLeft: number;
  isActive: boolean;
}

export interface AnnounceRequest {
  mediaId: string;
  text: string;
  preannounceMediaId?: string;
  startConversation?: boolean;
}

/** One API connection to one device. Sends after `close` are dropped silently. */
export interface DeviceConnection extends EventEmitter<DeviceConnectionEvents> {
  readonly info: DeviceInfo;
  /** SubscribeVoiceAssistantRequest{subscribe, flags: API_AUDIO}: local intent only, the device acknowledges nothing. */
  subscribeVoice(subscribe: boolean): void;
  /** VoiceAssistantResponse: {port: 0} = send the microphone over the API; {error: true} = refuse the run. */
  respondToRequest(r: { port: 0 } | { error: true }): void;
  sendVoiceEvent(type: VoiceEventType, data?: Record<string, string>): void;
  sendTimerEvent(e: TimerEvent): void;
  /** VoiceAssistantAnnounceRequest; `voice.announce_finished` follows when the device has played it. */
  announce(a: AnnounceRequest): void;
  /** VoiceAssistantConfigurationRequest; resolves with the response (empty lists from a non-owner), rejects on timeout or close. */
  voiceConfiguration(timeoutMs?: number): Promise<VoiceConfiguration>;
  close(): void;
}

/** DESIGN §11 "Who owns the voice assistant": owned by this connection, by someone else, or cannot tell. */
export type VoiceOwner = "openvoice" | "other" | "unknown";
