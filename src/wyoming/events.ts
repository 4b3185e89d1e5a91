/**
 * Wyoming events, one type each (as OHF-Voice/wyoming has one small class per event): zod schemas for
 * every event the service reads, parsed from a `WyomingFrame` into a discriminated union on `type`,
 * and typed builders for every event it writes. Field names are the wire's (`snake_case`).
 *
 * Python writers send `null` for optional fields they do not set (`"timestamp": null`): every optional
 * field here accepts `null` and reads it as absent. Unknown fields are dropped, not rejected: Wyoming
 * grows new ones.
 */
import { z } from "zod";
import type { WyomingErrorCode } from "../errors.js";
import type { OutgoingFrame, WyomingFrame } from "./framing.js";

/** `T | null | undefined` on the wire → `T | undefined`. */
const opt = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? undefined);

const text = z.string();
const optString = opt(z.string());

/** PCM format of an audio event: `width` in bytes per sample, `rate` in Hz. */
const audioFormat = {
  rate: z.number().int().min(1000).max(384_000),
  width: z.number().int().min(1).max(4),
  channels: z.number().int().min(1).max(16),
};
/** Milliseconds since the stream started. */
const timestamp = opt(z.number());

/** `context` of a conversation call: Home Assistant fills `conversation_id` and, from a device, its ids. */
export const ConversationContextSchema = z.looseObject({
  conversation_id: optString,
  device_id: optString,
  satellite_id: optString,
});
export type ConversationContext = z.infer<typeof ConversationContextSchema>;

/** `voice` of a synthesize call: a voice by name (with a speaker), or by language. */
export const SynthesizeVoiceSchema = z.object({
  name: optString,
  language: optString,
  speaker: optString,
});
export type SynthesizeVoice = z.infer<typeof SynthesizeVoiceSchema>;

const event = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) =>
  z.object({ type: z.literal(type), ...shape });

export const DescribeSchema = event("describe", {});
export const PingSchema = event("ping", { text: optString });
/** `transcribe` starts an ASR call; audio-start / audio-chunk… / audio-stop follow. */
export const TranscribeSchema = event("transcribe", {
  name: optString,
  language: optString,
  context: opt(z.record(z.string(), z.unknown())),
  vad_sensitivity: optString,
  transcript_names: opt(z.array(z.string())),
  transcript_terms: opt(z.array(z.string())),
});
export const AudioStartSchema = event("audio-start", { ...audioFormat, timestamp });
/** `audio` is the payload (empty when the event carried none, as in the Python reader). */
export const AudioChunkSchema = event("audio-chunk", {
  ...audioFormat,
  timestamp,
  audio: z.instanceof(Buffer),
});
export const AudioStopSchema = event("audio-stop", { timestamp });
/**
 * `transcript` read by this service is a conversation call (handle): Home Assistant sends the user's
 * text with `context.conversation_id`.
 */
export const TranscriptSchema = event("transcript", {
  text,
  language: optString,
  context: opt(ConversationContextSchema),
});
export const SynthesizeSchema = event("synthesize", {
  text,
  voice: opt(SynthesizeVoiceSchema),
  text_format: optString,
  context: opt(z.record(z.string(), z.unknown())),
});
export const SynthesizeStartSchema = event("synthesize-start", {
  voice: opt(SynthesizeVoiceSchema),
  text_format: optString,
  context: opt(z.record(z.string(), z.unknown())),
});
export const SynthesizeChunkSchema = event("synthesize-chunk", { text });
export const SynthesizeStopSchema = event("synthesize-stop", {});
/** A peer may report its own failure; read so it can be logged. */
export const ErrorEventSchema = event("error", { text, code: optString });

/** Every event this service reads. */
export const IncomingEventSchema = z.discriminatedUnion("type", [
  DescribeSchema,
  PingSchema,
  TranscribeSchema,
  AudioStartSchema,
  AudioChunkSchema,
  AudioStopSchema,
  TranscriptSchema,
  SynthesizeSchema,
  SynthesizeStartSchema,
  SynthesizeChunkSchema,
  SynthesizeStopSchema,
  ErrorEventSchema,
]);
export type IncomingEvent = z.infer<typeof IncomingEventSchema>;
export type IncomingEventType = IncomingEvent["type"];
/** The event of one type, e.g. `EventOf<"audio-chunk">`. */
export type EventOf<T extends IncomingEventType> = Extract<IncomingEvent, { type: T }>;

/** Events of a speech-to-text call. */
export type AsrEvent = EventOf<"transcribe" | "audio-start" | "audio-chunk" | "audio-stop">;
/** Events of a conversation call. */
export type HandleEvent = EventOf<"transcript">;
/** Events of a text-to-speech call, plain (`synthesize`) or streaming. */
export type TtsEvent = EventOf<"synthesize" | "synthesize-start" | "synthesize-chunk" | "synthesize-stop">;

export const INCOMING_EVENT_TYPES: ReadonlySet<string> = new Set<IncomingEventType>(
  IncomingEventSchema.options.map((o) => o.shape.type.value),
);

export type ParsedEvent =
  | { readonly kind: "event"; readonly event: IncomingEvent }
  /** A type this service does not read: skip it, the connection goes on. */
  | { readonly kind: "unknown"; readonly type: string }
  /** A known type whose data does not fit its schema. */
  | { readonly kind: "invalid"; readonly type: string; readonly message: string };

/** Reads one frame as an event. Never throws. */
export function parseEvent(frame: WyomingFrame): ParsedEvent {
  if (!INCOMING_EVENT_TYPES.has(frame.type)) return { kind: "unknown", type: frame.type };
  const input: Record<string, unknown> = { ...frame.data, type: frame.type };
  if (frame.type === "audio-chunk") input.audio = frame.payload ?? Buffer.alloc(0);
  const parsed = IncomingEventSchema.safeParse(input);
  if (parsed.success) return { kind: "event", event: parsed.data };
  const message = parsed.error.issues
    .map((i) => (i.path.length > 0 ? `${i.path.join(".")}: ${i.message}` : i.message))
    .join("; ");
  return { kind: "invalid", type: frame.type, message };
}

// ---------------------------------------------------------------------------------------------------
// What the service writes: the `info` reply's shape and one builder per event.

export interface Attribution {
  readonly name: string;
  readonly url: string;
}

/** Fields every program, model and voice of `info` carries. */
export interface Artifact {
  readonly name: string;
  readonly attribution: Attribution;
  readonly installed: boolean;
  readonly description: string | null;
  readonly version: string | null;
}

export interface AsrModelInfo extends Artifact {
  readonly languages: readonly string[];
}
export interface AsrProgramInfo extends Artifact {
  readonly models: readonly AsrModelInfo[];
  readonly supports_transcript_streaming: boolean;
  /** Newer field: `false` lets the service end the turn on its own (before `audio-stop`). */
  readonly requires_external_vad: boolean;
  /** Newer fields: whether Home Assistant should apply its auto gain / noise reduction first. */
  readonly prefers_auto_gain_enabled: boolean;
  readonly prefers_noise_reduction_enabled: boolean;
}
export interface TtsVoiceInfo extends Artifact {
  readonly languages: readonly string[];
  readonly speakers: readonly { readonly name: string }[] | null;
}
export interface TtsProgramInfo extends Artifact {
  readonly voices: readonly TtsVoiceInfo[];
  readonly supports_synthesize_streaming: boolean;
}
export interface HandleModelInfo extends Artifact {
  readonly languages: readonly string[];
}
export interface HandleProgramInfo extends Artifact {
  readonly models: readonly HandleModelInfo[];
  readonly supports_handled_streaming: boolean;
  readonly supports_home_control: boolean;
}

/** The `info` event's data. Lists this service does not fill are sent empty, as the Python writer does. */
export interface InfoData {
  readonly asr: readonly AsrProgramInfo[];
  readonly tts: readonly TtsProgramInfo[];
  readonly handle: readonly HandleProgramInfo[];
  readonly intent: readonly never[];
  readonly wake: readonly never[];
  readonly mic: readonly never[];
  readonly snd: readonly never[];
}

/** PCM format of audio the service writes. */
export interface AudioFormat {
  readonly rate: number;
  readonly width: number;
  readonly channels: number;
}

/** Keeps `undefined` out of the data (the frame writer drops it anyway; this keeps the types honest). */
function defined<T extends Record<string, unknown>>(data: T): T {
  return Object.fromEntries(Object.entries(data).filter(([, v]) => v !== undefined)) as T;
}

/** Builders of every event the service writes. Each returns a frame for `WyomingPeer.write`. */
export const WyomingEvents = {
  info: (data: InfoData): OutgoingFrame => ({ type: "info", data: { ...data } }),
  pong: (text?: string): OutgoingFrame => ({ type: "pong", data: defined({ text }) }),
  error: (text: string, code: WyomingErrorCode): OutgoingFrame => ({ type: "error", data: { text, code } }),
  transcript: (t: { text: string; language?: string; context?: Record<string, unknown> }): OutgoingFrame => ({
    type: "transcript",
    data: defined({ text: t.text, language: t.language, context: t.context }),
  }),
  transcriptStart: (t: { language?: string; context?: Record<string, unknown> } = {}): OutgoingFrame => ({
    type: "transcript-start",
    data: defined({ language: t.language, context: t.context }),
  }),
  transcriptChunk: (text: string): OutgoingFrame => ({ type: "transcript-chunk", data: { text } }),
  transcriptStop: (): OutgoingFrame => ({ type: "transcript-stop" }),
  handled: (t: { text: string; context?: Record<string, unknown> }): OutgoingFrame => ({
    type: "handled",
    data: defined({ text: t.text, context: t.context }),
  }),
  notHandled: (t: { text: string; context?: Record<string, unknown> }): OutgoingFrame => ({
    type: "not-handled",
    data: defined({ text: t.text, context: t.context }),
  }),
  audioStart: (f: AudioFormat, timestampMs?: number): OutgoingFrame => ({
    type: "audio-start",
    data: defined({ rate: f.rate, width: f.width, channels: f.channels, timestamp: timestampMs }),
  }),
  audioChunk: (f: AudioFormat, audio: Buffer, timestampMs?: number): OutgoingFrame => ({
    type: "audio-chunk",
    data: defined({ rate: f.rate, width: f.width, channels: f.channels, timestamp: timestampMs }),
    payload: audio,
  }),
  audioStop: (timestampMs?: number): OutgoingFrame => ({
    type: "audio-stop",
    data: defined({ timestamp: timestampMs }),
  }),
  synthesizeStopped: (): OutgoingFrame => ({ type: "synthesize-stopped" }),
} as const;
