/**
 * The seam between the Wyoming wire and the three programs (speech-to-text, conversation agent,
 * text-to-speech). The server owns sockets and framing; a program sees only parsed events of its own
 * kind and a `WyomingPeer` to answer on.
 *
 * Routing, per connection (Home Assistant opens one connection per call):
 * - `transcribe`, `audio-start`, `audio-chunk`, `audio-stop` → the ASR program;
 * - `transcript` (a conversation call, with `context`) → the handle program;
 * - `synthesize`, `synthesize-start`, `synthesize-chunk`, `synthesize-stop` → the TTS program;
 * - `describe` → `info`, `ping` → `pong`, answered by the server; other types are skipped.
 *
 * The first event of a program on a connection opens one call (`WyomingProgram.open`); that call
 * receives this event and every later event of the same program on that connection, then `close`
 * once when the connection ends. With no program registered for a kind, its events are answered with
 * `error {code: "not_supported"}` and the connection closes.
 */
import type { WyomingErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { WyomingProgramKind, WyomingTurn } from "./activity.js";
import type { AsrEvent, HandleEvent, TtsEvent } from "./events.js";
import type { OutgoingFrame } from "./framing.js";

/** One client connection, as a program may use it. */
export interface WyomingPeer {
  /** Connection id for logs and the status page, e.g. `w7`. */
  readonly id: string;
  /** `host:port` of the client. */
  readonly remote: string;
  /**
   * Writes one event (see `WyomingEvents` for builders). Events are written in call order. Resolves
   * once the socket has taken the bytes (backpressure: await it when streaming audio). After the
   * connection closed it does nothing and resolves `false`; it never rejects.
   */
  write(frame: OutgoingFrame): Promise<boolean>;
  /**
   * Sends `error {text, code}` and closes the connection after it is flushed. `text` is a sentence a
   * person understands (Home Assistant shows and logs it); it defaults to the code's meaning in the
   * error registry. Idempotent with `close`: once closing, later calls do nothing.
   */
  fail(code: WyomingErrorCode, text?: string): void;
  /** Ends the connection once everything written is flushed. Idempotent. */
  close(): void;
  /** True once the connection is closing or closed (either side). */
  readonly closed: boolean;
  /** Aborted when the connection closes (either side, or the service shutting down). */
  readonly signal: AbortSignal;
}

/** One program call on one connection. */
export interface WyomingCall<E> {
  /**
   * The next event of this call, in arrival order. The server waits for the returned promise before
   * it passes this connection's next event to any program (reading and framing checks go on), so a
   * long wait here (a model's answer) delays only this connection. Audio events must return quickly.
   * A rejection or throw sends `error {code: "internal"}` and closes the connection.
   */
  handle(event: E): void | Promise<void>;
  /**
   * The connection ended (client closed, bad input, `peer.close`/`peer.fail`, or shutdown). Called
   * exactly once, after the last `handle`; release upstream resources here. Must not throw.
   */
  close(reason: string): void;
}

/** Everything a program is given when a call opens. */
export interface WyomingCallContext {
  readonly peer: WyomingPeer;
  /**
   * Reports stage timings and the outcome. Finish it when the call has answered (`success`) or failed
   * (`error`); if the connection closes first the server finishes it as `abandoned`.
   */
  readonly turn: WyomingTurn;
  /** A child logger for this connection. No transcripts or audio at info level. */
  readonly logger: Logger;
}

/** A program: opens one call per connection that uses it. */
export interface WyomingProgram<E> {
  open(ctx: WyomingCallContext): WyomingCall<E>;
}

/** Speech to text: `transcribe` + audio in, `transcript` out. */
export interface WyomingAsrProgram extends WyomingProgram<AsrEvent> {
  /** Whether calls also write `transcript-start` / `transcript-chunk` / `transcript-stop` (info flag). */
  readonly supportsTranscriptStreaming: boolean;
}

/** Conversation agent: `transcript {text, context}` in, `handled` / `not-handled` / `error` out. */
export type WyomingHandleProgram = WyomingProgram<HandleEvent>;

/** Text to speech: `synthesize` (or the streaming sequence) in, audio out. */
export interface WyomingTtsProgram extends WyomingProgram<TtsEvent> {
  /** Whether the streaming sequence is understood (info flag `supports_synthesize_streaming`). */
  readonly supportsSynthesizeStreaming: boolean;
}

/** The programs a server serves; a missing one answers `not_supported`. */
export interface WyomingPrograms {
  readonly asr?: WyomingAsrProgram;
  readonly handle?: WyomingHandleProgram;
  readonly tts?: WyomingTtsProgram;
}

/** Which program an event type belongs to; `undefined` for events the server answers itself. */
export function programOf(type: string): WyomingProgramKind | undefined {
  switch (type) {
    case "transcribe":
    case "audio-start":
    case "audio-chunk":
    case "audio-stop":
      return "asr";
    case "transcript":
      return "handle";
    case "synthesize":
    case "synthesize-start":
    case "synthesize-chunk":
    case "synthesize-stop":
      return "tts";
    default:
      return undefined;
  }
}
