/**
 * Satellite wire protocol v1 (DESIGN §5), both directions, as zod schemas. This file is the
 * contract: a change to any shape here is a protocol change and needs a new version number.
 *
 * Text frames are JSON objects with `type` first; binary frames are raw PCM s16le mono.
 * Unknown fields in client messages are ignored (stripped), so firmwares may send extras.
 */
import { z } from "zod";
import { SATELLITE_ERRORS, type SatelliteErrorCode } from "../../errors.js";

export const PROTOCOL_VERSION = 1;

/** Sample rates a satellite may declare per direction. 24 kHz skips resampling. */
export const AudioRateSchema = z.union([z.literal(16000), z.literal(24000)]);
export type AudioRate = z.infer<typeof AudioRateSchema>;

export const TurnModeSchema = z.enum(["server_vad", "client"]);
export type TurnMode = z.infer<typeof TurnModeSchema>;

/** Same alphabet as configured device ids (`satellites.devices[].id`). */
export const CLIENT_ID_RE = /^[a-zA-Z0-9_.:-]{1,64}$/;

const AudioFormatsSchema = z.object({
  in: z.object({ rate: AudioRateSchema }),
  out: z.object({ rate: AudioRateSchema }),
});
export type AudioFormats = z.infer<typeof AudioFormatsSchema>;

// ── client → server ──────────────────────────────────────────────────────────────────────────

export const HelloSchema = z.object({
  type: z.literal("hello"),
  protocol: z.literal(PROTOCOL_VERSION),
  client_id: z.string().regex(CLIENT_ID_RE, "letters, digits, _ . : - only (1-64 characters)"),
  name: z.string().max(128).optional(),
  token: z.string().min(1).max(512).optional(),
  audio: AudioFormatsSchema,
  turn: TurnModeSchema.default("server_vad"),
});
export type Hello = z.infer<typeof HelloSchema>;

export const TurnStartSchema = z.object({
  type: z.literal("turn.start"),
  wake_word: z.string().max(128).optional(),
});
export const TurnEndSchema = z.object({ type: z.literal("turn.end") });
export const CancelSchema = z.object({ type: z.literal("cancel"), reason: z.string().max(256).optional() });
export const PlaybackDoneSchema = z.object({
  type: z.literal("playback.done"),
  played_ms: z.number().finite().min(0),
});
export const ApprovalReplySchema = z.object({
  type: z.literal("approval.reply"),
  id: z.string().min(1).max(256),
  approve: z.boolean(),
});

export const ClientMessageSchema = z.discriminatedUnion("type", [
  HelloSchema,
  TurnStartSchema,
  TurnEndSchema,
  CancelSchema,
  PlaybackDoneSchema,
  ApprovalReplySchema,
]);
export type ClientMessage = z.infer<typeof ClientMessageSchema>;
export type ClientMessageType = ClientMessage["type"];

const CLIENT_TYPES: ReadonlySet<string> = new Set<ClientMessageType>([
  "hello",
  "turn.start",
  "turn.end",
  "cancel",
  "playback.done",
  "approval.reply",
]);

// ── server → client ──────────────────────────────────────────────────────────────────────────

export const SatelliteStateSchema = z.enum(["idle", "listening", "thinking", "speaking", "error"]);
export type SatelliteState = z.infer<typeof SatelliteStateSchema>;

export const SatelliteErrorCodeSchema = z.enum(
  Object.keys(SATELLITE_ERRORS) as [SatelliteErrorCode, ...SatelliteErrorCode[]],
);

export const SessionReadySchema = z.object({
  type: z.literal("session_ready"),
  protocol: z.literal(PROTOCOL_VERSION),
  session_id: z.string(),
  audio: AudioFormatsSchema,
  turn: TurnModeSchema,
});
export const StateSchema = z.object({ type: z.literal("state"), value: SatelliteStateSchema });
export const ResponseStartSchema = z.object({ type: z.literal("response.start"), id: z.string() });
export const ResponseEndSchema = z.object({
  type: z.literal("response.end"),
  id: z.string(),
  reason: z.enum(["done", "cancelled", "interrupted", "failed"]),
});
export const PlaybackClearSchema = z.object({ type: z.literal("playback.clear") });
export const TranscriptSchema = z.object({
  type: z.literal("transcript"),
  role: z.enum(["user", "assistant"]),
  text: z.string(),
  final: z.boolean(),
});
export const ToolSchema = z.object({
  type: z.literal("tool"),
  name: z.string(),
  server: z.string(),
  status: z.enum(["started", "completed", "failed"]),
});
export const ApprovalRequestSchema = z.object({
  type: z.literal("approval.request"),
  id: z.string(),
  server: z.string(),
  tool: z.string(),
  /** The raw JSON arguments string as the model produced it. */
  arguments: z.string(),
  /** Whole seconds left before no answer counts as a denial. */
  timeout_s: z.number().int().min(0),
});
/** How an approval shown with `approval.request` ended, wherever it was answered. */
export const ApprovalDoneSchema = z.object({
  type: z.literal("approval.done"),
  id: z.string(),
  outcome: z.enum(["approved", "denied", "timeout", "cancelled"]),
});
export const ErrorMessageSchema = z.object({
  type: z.literal("error"),
  code: SatelliteErrorCodeSchema,
  message: z.string(),
  fatal: z.boolean(),
});
export const SessionEndSchema = z.object({ type: z.literal("session.end"), reason: z.string() });

export const ServerMessageSchema = z.discriminatedUnion("type", [
  SessionReadySchema,
  StateSchema,
  ResponseStartSchema,
  ResponseEndSchema,
  PlaybackClearSchema,
  TranscriptSchema,
  ToolSchema,
  ApprovalRequestSchema,
  ApprovalDoneSchema,
  ErrorMessageSchema,
  SessionEndSchema,
]);
export type ServerMessage = z.infer<typeof ServerMessageSchema>;
export type ServerMessageOf<T extends ServerMessage["type"]> = Extract<ServerMessage, { type: T }>;

// ── parsing ──────────────────────────────────────────────────────────────────────────────────

export type ParseResult =
  | { ok: true; msg: ClientMessage }
  | { ok: false; code: Extract<SatelliteErrorCode, "bad_message" | "unsupported_protocol">; message: string };

/**
 * Parses one text frame. Never throws. Invalid JSON, a non-object, an unknown `type` or invalid
 * fields give `bad_message`; a `hello` whose numeric `protocol` is not 1 gives `unsupported_protocol`.
 */
export function parseClientMessage(text: string): ParseResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, code: "bad_message", message: "invalid JSON" };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    return { ok: false, code: "bad_message", message: "a message must be a JSON object" };
  const type = (raw as { type?: unknown }).type;
  if (typeof type !== "string")
    return { ok: false, code: "bad_message", message: "missing string field `type`" };
  if (!CLIENT_TYPES.has(type))
    return {
      ok: false,
      code: "bad_message",
      message: `unknown message type ${JSON.stringify(type.slice(0, 64))}`,
    };
  const protocol = (raw as { protocol?: unknown }).protocol;
  if (type === "hello" && typeof protocol === "number" && protocol !== PROTOCOL_VERSION)
    return {
      ok: false,
      code: "unsupported_protocol",
      message: `protocol ${protocol} is not supported; this server speaks ${PROTOCOL_VERSION}`,
    };
  const parsed = ClientMessageSchema.safeParse(raw);
  if (!parsed.success)
    return { ok: false, code: "bad_message", message: `invalid ${type}: ${summarise(parsed.error)}` };
  return { ok: true, msg: parsed.data };
}

function summarise(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${i.path.length > 0 ? i.path.join(".") : "(root)"}: ${i.message}`)
    .join("; ");
}

/** Serialises a server message (the object literals are built with `type` first). */
export function encodeServerMessage(msg: ServerMessage): string {
  return JSON.stringify(msg);
}

/** The `error` frame for a registry code; `fatal` and the default text come from the registry. */
export function errorMessage(code: SatelliteErrorCode, message?: string): ServerMessageOf<"error"> {
  const spec = SATELLITE_ERRORS[code];
  return { type: "error", code, message: message ?? spec.message, fatal: spec.fatal };
}
