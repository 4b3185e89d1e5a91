/**
 * Upstream server events at the edge: every frame is validated with zod before the session reads it.
 * Only the events the session consumes are validated in depth (the fields it reads); anything else is
 * returned as `unknown` so the caller can log it at debug and move on. The event types come from the
 * `openai` package: a renamed event or field there breaks this file's build.
 */
import { z } from "zod";
import type { RealtimeServerEvent } from "openai/resources/realtime/realtime";

export type { RealtimeClientEvent, RealtimeServerEvent } from "openai/resources/realtime/realtime";

export type ServerEventType = RealtimeServerEvent["type"];
export type ServerEventOf<T extends ServerEventType> = Extract<RealtimeServerEvent, { type: T }>;

const item = z.looseObject({ type: z.string(), id: z.string().optional() });
const withItem = z.looseObject({ item });
const itemId = z.looseObject({ item_id: z.string() });
const responseIds = z.looseObject({ response_id: z.string(), item_id: z.string() });

/** The events the session handles, with the fields it reads. Keys must be GA event names. */
const SCHEMAS = {
  "session.created": z.looseObject({ session: z.looseObject({}) }),
  "session.updated": z.looseObject({ session: z.looseObject({}) }),
  error: z.looseObject({
    error: z.looseObject({
      type: z.string(),
      message: z.string(),
      code: z.string().nullish(),
      event_id: z.string().nullish(),
    }),
  }),
  "conversation.item.added": withItem,
  "conversation.item.done": withItem,
  "response.output_item.added": withItem,
  "response.output_item.done": withItem,
  "mcp_list_tools.in_progress": itemId,
  "mcp_list_tools.completed": itemId,
  "mcp_list_tools.failed": itemId,
  "response.mcp_call.in_progress": itemId,
  "response.mcp_call.completed": itemId,
  "response.mcp_call.failed": itemId,
  "response.created": z.looseObject({ response: z.looseObject({ id: z.string() }) }),
  "response.done": z.looseObject({
    response: z.looseObject({
      id: z.string(),
      status: z.string().optional(),
      status_details: z
        .looseObject({
          reason: z.string().optional(),
          error: z.looseObject({ code: z.string().optional(), type: z.string().optional() }).nullish(),
        })
        .nullish(),
      usage: z
        .looseObject({
          input_token_details: z
            .looseObject({
              text_tokens: z.number().optional(),
              audio_tokens: z.number().optional(),
              cached_tokens: z.number().optional(),
            })
            .optional(),
          output_token_details: z
            .looseObject({ text_tokens: z.number().optional(), audio_tokens: z.number().optional() })
            .optional(),
        })
        .nullish(),
    }),
  }),
  "response.output_audio.delta": responseIds.extend({ delta: z.string() }),
  "response.output_audio_transcript.delta": responseIds.extend({ delta: z.string() }),
  "response.output_audio_transcript.done": responseIds.extend({ transcript: z.string() }),
  "response.function_call_arguments.done": responseIds.extend({
    call_id: z.string(),
    name: z.string(),
    arguments: z.string(),
  }),
  "input_audio_buffer.speech_started": itemId,
  "input_audio_buffer.speech_stopped": itemId,
  "conversation.item.input_audio_transcription.completed": itemId.extend({
    transcript: z.string(),
    usage: z
      .union([
        z.looseObject({
          type: z.literal("tokens"),
          input_tokens: z.number().optional(),
          output_tokens: z.number().optional(),
          input_token_details: z
            .looseObject({ audio_tokens: z.number().optional(), text_tokens: z.number().optional() })
            .optional(),
        }),
        z.looseObject({ type: z.literal("duration"), seconds: z.number() }),
      ])
      .optional()
      .catch(undefined),
  }),
  "conversation.item.input_audio_transcription.failed": itemId.extend({
    error: z.looseObject({ message: z.string().optional(), code: z.string().optional() }),
  }),
  "input_audio_buffer.committed": itemId,
} satisfies Partial<Record<ServerEventType, z.ZodType>>;

export type HandledEventType = keyof typeof SCHEMAS;
export type HandledEvent = ServerEventOf<HandledEventType>;

export type ParsedServerEvent =
  | { kind: "event"; event: HandledEvent }
  /** Valid JSON with a `type` we do not handle (or do not know). */
  | { kind: "unknown"; type: string }
  /** Not JSON, no type, or a handled type with missing/invalid fields. */
  | { kind: "invalid"; type?: string; issue: string };

const envelope = z.looseObject({ type: z.string().min(1) });

function isHandled(type: string): type is HandledEventType {
  return Object.hasOwn(SCHEMAS, type);
}

/** Parses one text frame from the upstream. Never throws. */
export function parseServerEvent(text: string): ParsedServerEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { kind: "invalid", issue: "not JSON" };
  }
  const env = envelope.safeParse(raw);
  if (!env.success) return { kind: "invalid", issue: "no type" };
  const type = env.data.type;
  if (!isHandled(type)) return { kind: "unknown", type };
  const parsed = SCHEMAS[type].safeParse(raw);
  if (!parsed.success) return { kind: "invalid", type, issue: parsed.error.issues[0]?.message ?? "invalid" };
  // The schema checked every field the session reads; the rest of the shape is the openai type's.
  return { kind: "event", event: raw as HandledEvent };
}
