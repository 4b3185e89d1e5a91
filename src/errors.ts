/**
 * The one error registry. Every satellite protocol error code and every HTTP API error is declared
 * here once; DOCS.md lists them all (a test keeps the two in step).
 */

export interface ErrorSpec {
  /** HTTP status for API errors; WebSocket close code for satellite errors that close. */
  readonly status: number;
  readonly message: string;
  /** Satellite errors: whether the connection is closed after sending it. */
  readonly fatal: boolean;
}

const def = (status: number, message: string, fatal = false): ErrorSpec => ({ status, message, fatal });

/** Satellite wire protocol error codes (DESIGN §5). `status` is the close code when `fatal`. */
export const SATELLITE_ERRORS = {
  unauthorized: def(1008, "missing or invalid token", true),
  bad_hello: def(1002, "the first message must be a valid hello", true),
  hello_timeout: def(1002, "no hello within 10 seconds", true),
  unsupported_protocol: def(1002, "unsupported protocol version", true),
  bad_message: def(1007, "invalid JSON or an unknown/invalid message"),
  bad_audio: def(1007, "audio frames must be PCM16: an even number of bytes"),
  frame_too_large: def(1009, "frame larger than 64 KiB", true),
  rate_limited: def(1008, "too many frames or bytes per second", true),
  slow_consumer: def(1013, "the satellite is not reading what it is sent", true),
  upstream_unavailable: def(1011, "the Realtime upstream cannot be reached"),
  response_failed: def(1011, "the assistant could not finish its answer"),
  approval_unknown: def(1007, "no pending approval with that id"),
  too_many_conversations: def(1013, "too many conversations at once; try again when one ends"),
  too_many_connections: def(1008, "too many connections with this device token", true),
  budget_exceeded: def(
    1008,
    "today's voice budget is used up (cost.daily_budget_usd); it resets at midnight",
  ),
  internal: def(1011, "internal error"),
} as const satisfies Record<string, ErrorSpec>;
export type SatelliteErrorCode = keyof typeof SATELLITE_ERRORS;

/** What a Wyoming `error {text, code}` means; the service closes the connection after sending one. */
export interface WyomingErrorSpec {
  readonly message: string;
}

/** Wyoming error codes (DESIGN §9): framing, event and program failures, each a Wyoming `error` event. */
export const WYOMING_ERRORS = {
  bad_header: { message: "the header line is not a JSON object with a type and valid lengths" },
  header_too_large: { message: "header line longer than 64 KiB" },
  bad_data: { message: "the data part is not a JSON object" },
  data_too_large: { message: "data part larger than 1 MiB" },
  payload_too_large: { message: "payload larger than 1 MiB" },
  truncated: { message: "the connection ended in the middle of an event" },
  bad_event: { message: "a known event with invalid data" },
  not_supported: { message: "that program is not available in this service" },
  bad_audio: { message: "audio the service cannot use (format, or audio outside a stream)" },
  upstream_unavailable: { message: "the Realtime upstream cannot be reached" },
  forbidden: { message: "this address may not use the Wyoming service (see wyoming.allowed_addresses)" },
  too_many_connections: {
    message:
      "this address already holds the most connections allowed (wyoming.max_connections_per_peer), " +
      "or the service is full and answers only describe",
  },
  event_timeout: { message: "an event did not arrive whole within 10 seconds of its first byte" },
  response_failed: { message: "the Realtime model did not produce an answer" },
  budget_exceeded: {
    message: "today's voice budget is used up (cost.daily_budget_usd); it resets at midnight",
  },
  internal: { message: "internal error" },
} as const satisfies Record<string, WyomingErrorSpec>;
export type WyomingErrorCode = keyof typeof WYOMING_ERRORS;

/**
 * Codes of the `ERROR` voice event sent to an ESPHome voice satellite (DESIGN §11); the event's
 * `message` is words a user understands. An error of the realtime engine (`upstream_unavailable`,
 * `too_many_conversations`, …) is passed through with its own code and words.
 */
export const ESPHOME_VOICE_ERRORS = {
  "stt-no-text-recognized": { message: "no speech was heard" },
  upstream_unavailable: { message: "the Realtime upstream cannot be reached" },
  response_failed: { message: "the assistant could not finish its answer" },
  no_reply_url: { message: "the device cannot be given an address to fetch the reply from" },
  budget_exceeded: {
    message: "today's voice budget is used up (cost.daily_budget_usd); it resets at midnight",
  },
  timeout: { message: "the assistant did not answer in time" },
  internal: { message: "internal error" },
} as const satisfies Record<string, { message: string }>;
export type EsphomeVoiceErrorCode = keyof typeof ESPHOME_VOICE_ERRORS;

/** HTTP API error codes (admin API behind ingress, /metrics). */
export const API_ERRORS = {
  not_found: def(404, "no such resource"),
  unknown_server: def(404, "no MCP server with that name"),
  unknown_approval: def(404, "no pending approval with that id"),
  unknown_device: def(404, "no ESPHome voice device with that name"),
  not_taken_over: def(409, "OpenVoice does not answer this device's voice assistant"),
  announce_failed: def(502, "the device did not play the announcement"),
  bad_request: def(400, "the request body is invalid"),
  no_budget: def(409, "no daily budget is configured (cost.daily_budget_usd, cost.device_daily_budget_usd)"),
  forbidden: def(403, "only Home Assistant ingress may use this endpoint"),
  forbidden_host: def(403, "the Host header must name this machine (localhost, 127.0.0.1 or [::1])"),
  forbidden_origin: def(403, "requests from a web page on another origin are refused"),
  unauthorized: def(401, "missing or invalid bearer token"),
  not_ready: def(503, "the service is not ready"),
  internal: def(500, "internal error"),
} as const satisfies Record<string, ErrorSpec>;
export type ApiErrorCode = keyof typeof API_ERRORS;

/** An API error carrying its registry code; the HTTP layer turns it into `{error:{code,message}}`. */
export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly status: number;
  constructor(code: ApiErrorCode, message?: string) {
    super(message ?? API_ERRORS[code].message);
    this.name = "ApiError";
    this.code = code;
    this.status = API_ERRORS[code].status;
  }
}

/** The satellite codes of a limit that refused something. */
export type LimitErrorCode = "too_many_conversations" | "too_many_connections" | "budget_exceeded";

/**
 * A limit refused a request (a conversation beyond `satellites.max_conversations`, a connection
 * beyond the per-device-token cap). Front ends pass `code` and `message` on to the device.
 */
export class LimitError extends Error {
  readonly code: LimitErrorCode;
  constructor(code: LimitErrorCode, message?: string) {
    super(message ?? SATELLITE_ERRORS[code].message);
    this.name = "LimitError";
    this.code = code;
  }
}

/**
 * Today's voice budget (all devices, or the device's) is used up: no new conversation until midnight or
 * until more is allowed. `message` is the sentence to show or say.
 */
export class BudgetExceededError extends LimitError {
  constructor(message: string) {
    super("budget_exceeded", message);
    this.name = "BudgetExceededError";
  }
}

/** Wire shape of an API error body. */
export function apiErrorBody(
  code: ApiErrorCode,
  message?: string,
): { error: { code: string; message: string } } {
  return { error: { code, message: message ?? API_ERRORS[code].message } };
}

/** Why a connection to an ESPHome device failed (DESIGN §11); the error's own text names the device. */
export const ESPHOME_CONNECT_ERRORS = {
  unreachable: { message: "the device cannot be reached" },
  bad_key: { message: "the encryption key does not match" },
  key_required: { message: "the device needs an encryption key" },
  timeout: { message: "the device did not answer in time" },
  protocol: { message: "the device answered something this client does not understand" },
} as const satisfies Record<string, { message: string }>;
export type EsphomeConnectErrorCode = keyof typeof ESPHOME_CONNECT_ERRORS;
