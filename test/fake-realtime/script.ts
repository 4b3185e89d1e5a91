/**
 * What a test tells the fake Realtime server: its options, the scripted turns played by
 * `response.create`, the MCP tool listings, and the outages (`fault`).
 */
import type { RealtimeMcpListTools, RealtimeResponseUsage } from "openai/resources/realtime/realtime";

/** What `mcp_list_tools` does for one server_label. Default: completes at once with no tools. */
export interface FakeMcpScript {
  outcome: "completed" | "failed";
  delayMs?: number;
  tools?: RealtimeMcpListTools.Tool[];
  /**
   * Event order the API allows: `item_first` (default) sends `conversation.item.added` before
   * `mcp_list_tools.*`; `outcome_first` sends `in_progress` and the outcome before any item event.
   * `itemVia: "done"` announces the item only through `conversation.item.done` (no `.added`).
   */
  order?: "item_first" | "outcome_first";
  itemVia?: "added" | "done";
}

/** An upstream `error` event as the fake sends it. */
export interface FakeUpstreamError {
  code: string;
  message?: string;
  /** `error.type`; default `invalid_request_error`. */
  type?: string;
}

/**
 * An outage of the upstream (`FakeRealtimeServer.fault`): `quota` answers every new socket's first event
 * with `insufficient_quota` and closes it, `bad_key` with `invalid_api_key`; `silent` accepts the socket and
 * never says anything.
 */
/**
 * `quota`, `bad_key`: refused sessions; `silent`: the socket opens and nothing is said; `unavailable`: the
 * upgrade is refused with 503 (a passing failure, not a refusal of the account).
 */
export type FakeFault = "quota" | "bad_key" | "silent" | "unavailable";

export const FAULT_ERRORS: Record<Exclude<FakeFault, "silent" | "unavailable">, FakeUpstreamError> = {
  quota: {
    code: "insufficient_quota",
    type: "insufficient_quota",
    message: "You exceeded your current quota, please check your plan and billing details.",
  },
  bad_key: { code: "invalid_api_key", message: "Incorrect API key provided." },
};

/** One scripted reaction to a `response.create` (or to a VAD end of turn with create_response). */
export type FakeTurn =
  | { kind: "speak"; transcript?: string; audio?: Buffer }
  | { kind: "function_call"; name: string; arguments: string; callId?: string }
  | {
      kind: "mcp_approval";
      serverLabel: string;
      name: string;
      arguments: string;
      /** Output of the mcp_call when approved. */
      output?: string;
      /** Make the approved mcp_call fail instead. */
      fail?: boolean;
    }
  | { kind: "error"; code: string; message?: string; errorType?: string }
  /**
   * A native MCP call the model makes without asking (`require_approval: never`): the response carries
   * the `mcp_call` and ends without speaking, as the real API does. `order`: `completed_first` sends
   * `response.mcp_call.completed|failed` before the item's `.done` events, `item_first` after them.
   */
  | {
      kind: "mcp_call";
      serverLabel: string;
      name: string;
      arguments: string;
      output?: string;
      fail?: boolean;
      order?: "completed_first" | "item_first";
    }
  /**
   * A response that ends `failed` (the default, with a `server_error`) or `incomplete` before any
   * output.
   */
  | {
      kind: "failed";
      status?: "failed" | "incomplete";
      reason?: "max_output_tokens" | "content_filter";
      error?: { type: string; code?: string };
    }
  /** Starts a response and never finishes it (until cancelled or the socket ends). */
  | { kind: "hang" }
  /** Sends nothing at all. */
  | { kind: "silent" };

export interface FakeRealtimeOptions {
  /** Expected bearer key. Default `sk-test`. */
  apiKey?: string;
  /** Delay before `session.created` (a realistic upstream takes a few hundred ms). Default 0. */
  sessionSetupDelayMs?: number;
  /** Delay before each `session.updated`. Default 0. */
  sessionUpdateDelayMs?: number;
  /** Per server_label list-tools behaviour. */
  mcp?: Record<string, FakeMcpScript>;
  /** Reply audio, PCM16 24 kHz mono. Default: 400 ms of a 440 Hz tone. */
  replyAudio?: Buffer;
  /** Transcript of spoken replies. Default "Sure, done." */
  replyTranscript?: string;
  /** Transcript the fake "hears" for each committed user turn. Default "turn on the kitchen light". */
  userTranscript?: string;
  /** Transcript of one committed turn from its audio (PCM16 24 kHz); overrides `userTranscript`. */
  transcribe?: (pcm: Buffer) => string;
  /**
   * Input transcription after a commit: `delayMs` after `conversation.item.added` (default 5), as word
   * deltas then `.completed` (or `.failed` when `fail`), sent `after_item_done` (default) or
   * `before_item_done` (the user item's `conversation.item.done` waits for the transcript). Transcription
   * runs unless a `session.update` set `audio.input.transcription` to null.
   */
  transcription?: { delayMs?: number; order?: "after_item_done" | "before_item_done"; fail?: boolean };
  /**
   * Audio of an out-of-band spoken text (PCM16 24 kHz) in `voice`: the response's own
   * `audio.output.voice`, else the session's. Default: `replyAudio`.
   */
  speechAudio?: (text: string, voice: string) => Buffer;
  /**
   * Delay from the commit to the input transcription (`transcription.delayMs` wins). Default 5.
   * Transcription runs beside the response, so with a long delay the reply's deltas come first, as
   * they often do upstream.
   */
  userTranscriptDelayMs?: number;
  /** Audio chunk size in ms. Default 100. */
  chunkMs?: number;
  /** Multiple of real time at which reply audio is sent; Infinity sends all at once. Default 4. */
  audioSpeed?: number;
  /**
   * False for load runs: each `input_audio_buffer.append` is still emitted (`event`), timed and run through
   * the VAD, but neither kept in `received` nor its audio kept for the turn's transcription, so a long
   * run holds no more memory at its end than at its start (and the load generator's own garbage
   * collector does not pause it for longer and longer). Default true.
   */
  keepAppends?: boolean;
  /** Server VAD tuning (audio time). */
  vad?: { threshold?: number; speechMs?: number; silenceMs?: number };
  /** Usage reported in every `response.done`. */
  usage?: RealtimeResponseUsage;
  /**
   * Per connection attempt (1-based, counting accepted sockets): an `error` sent as the socket's first
   * event, before `session.created`, after which the fake closes the socket (as an out-of-quota or
   * revoked key is answered). Undefined: a normal session.
   */
  refuseSession?: (attempt: number) => FakeUpstreamError | undefined;
  /**
   * When an approved native call runs: `approval` (default) starts a response running it as soon as the
   * approving `mcp_approval_response` arrives; `response.create` waits for the client's next
   * `response.create`. The API's documentation allows either reading; the session must work with both.
   */
  approvedCallRunsOn?: "approval" | "response.create";
  /** Ends every session with `session_expired` + close 1001 after this many ms. */
  maxSessionMs?: number;
  /**
   * Model "thinking" time of a spoken reply: from `response.created` to its first output event.
   * Default 0. A fixed delay makes end-to-end latency figures comparable with a real upstream.
   */
  replyDelayMs?: number;
  /**
   * A busy upstream: a client `response.create` (in-band), or the response server VAD starts at the end
   * of a turn, begins (with its `response.created`) only this many ms later. Default 0.
   */
  responseCreatedDelayMs?: number;
}
