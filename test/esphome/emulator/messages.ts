/** The api.proto messages the emulated device speaks: ids, encoders and decoders. */
import { ProtoWriter, bufs, decodeFields, float, num, str } from "./proto.js";

export const Msg = {
  HelloRequest: 1,
  HelloResponse: 2,
  ConnectRequest: 3,
  ConnectResponse: 4,
  DisconnectRequest: 5,
  DisconnectResponse: 6,
  PingRequest: 7,
  PingResponse: 8,
  DeviceInfoRequest: 9,
  DeviceInfoResponse: 10,
  ListEntitiesRequest: 11,
  ListEntitiesDoneResponse: 19,
  SubscribeStatesRequest: 20,
  SubscribeVoiceAssistantRequest: 89,
  VoiceAssistantRequest: 90,
  VoiceAssistantResponse: 91,
  VoiceAssistantEventResponse: 92,
  VoiceAssistantAudio: 106,
  VoiceAssistantTimerEventResponse: 115,
  VoiceAssistantAnnounceRequest: 119,
  VoiceAssistantAnnounceFinished: 120,
  VoiceAssistantConfigurationRequest: 121,
  VoiceAssistantConfigurationResponse: 122,
  VoiceAssistantSetConfiguration: 123,
} as const;

export const helloResponse = (name: string): Buffer =>
  new ProtoWriter().uint(1, 1).uint(2, 12).string(3, "esphome-emulator (2025.10.0)").string(4, name).finish();

export const clientHello = (clientInfo: string): Buffer =>
  new ProtoWriter().string(1, clientInfo).uint(2, 1).uint(3, 12).finish();

export interface DeviceInfoFields {
  name: string;
  friendlyName: string;
  macAddress: string;
  model: string;
  esphomeVersion: string;
  voiceFeatures: number;
}

export const deviceInfoResponse = (d: DeviceInfoFields): Buffer =>
  new ProtoWriter()
    .string(2, d.name)
    .string(3, d.macAddress)
    .string(4, d.esphomeVersion)
    .string(6, d.model)
    .string(12, "Nabu Casa")
    .string(13, d.friendlyName)
    .uint(17, d.voiceFeatures)
    .finish();

export function voiceAssistantRequest(r: {
  start: boolean;
  conversationId: string;
  flags: number;
  wakeWord: string;
}): Buffer {
  const settings = new ProtoWriter().uint(1, 0).uint(2, 0).float(3, 1).finish();
  return new ProtoWriter()
    .bool(1, r.start)
    .string(2, r.conversationId)
    .uint(3, r.flags)
    .message(4, settings)
    .string(5, r.wakeWord)
    .finish();
}

export const voiceAudio = (pcm: Buffer): Buffer => new ProtoWriter().bytes(1, pcm).finish();

export const announceFinished = (success: boolean): Buffer => new ProtoWriter().bool(1, success).finish();

export function configurationResponse(c: {
  available: { id: string; wakeWord: string; trainedLanguages: string[] }[];
  active: string[];
  maxActive: number;
}): Buffer {
  const w = new ProtoWriter();
  for (const ww of c.available) {
    const one = new ProtoWriter().string(1, ww.id).string(2, ww.wakeWord);
    for (const l of ww.trainedLanguages) one.string(3, l);
    w.message(1, one.finish());
  }
  for (const id of c.active) w.string(2, id);
  return w.uint(3, c.maxActive).finish();
}

export const subscribeVoice = (subscribe: boolean): Buffer =>
  new ProtoWriter().bool(1, subscribe).uint(2, 1).finish();

export function decodeHello(p: Buffer): { clientInfo: string } {
  return { clientInfo: str(decodeFields(p), 1) };
}

export function decodeSubscribe(p: Buffer): { subscribe: boolean; flags: number } {
  const f = decodeFields(p);
  return { subscribe: num(f, 1) === 1, flags: num(f, 2) };
}

export function decodeResponse(p: Buffer): { port: number; error: boolean } {
  const f = decodeFields(p);
  return { port: num(f, 1), error: num(f, 2) === 1 };
}

export function decodeEvent(p: Buffer): { type: number; data: Record<string, string> } {
  const f = decodeFields(p);
  const data: Record<string, string> = {};
  for (const d of bufs(f, 2)) {
    const df = decodeFields(d);
    data[str(df, 1)] = str(df, 2);
  }
  return { type: num(f, 1), data };
}

/** VoiceAssistantTimerEventResponse. */
export interface TimerRecord {
  type: number;
  timerId: string;
  name: string;
  totalSeconds: number;
  secondsLeft: number;
  isActive: boolean;
}

export function decodeTimer(p: Buffer): TimerRecord {
  const f = decodeFields(p);
  return {
    type: num(f, 1),
    timerId: str(f, 2),
    name: str(f, 3),
    totalSeconds: num(f, 4),
    secondsLeft: num(f, 5),
    isActive: num(f, 6) === 1,
  };
}

export function decodeAnnounce(p: Buffer): {
  mediaId: string;
  text: string;
  preannounceMediaId: string;
  startConversation: boolean;
} {
  const f = decodeFields(p);
  return {
    mediaId: str(f, 1),
    text: str(f, 2),
    preannounceMediaId: str(f, 3),
    startConversation: num(f, 4) === 1,
  };
}

export function decodeConfiguration(p: Buffer): { available: number; active: string[]; maxActive: number } {
  const f = decodeFields(p);
  return {
    available: bufs(f, 1).length,
    active: bufs(f, 2).map((b) => b.toString("utf8")),
    maxActive: num(f, 3),
  };
}

/** For the other client: the audio settings' volume, to check the float codec round-trips. */
export function decodeRequest(p: Buffer): {
  start: boolean;
  conversationId: string;
  flags: number;
  volume: number;
} {
  const f = decodeFields(p);
  const settings = bufs(f, 4)[0];
  return {
    start: num(f, 1) === 1,
    conversationId: str(f, 2),
    flags: num(f, 3),
    volume: settings ? float(decodeFields(settings), 3) : 0,
  };
}
