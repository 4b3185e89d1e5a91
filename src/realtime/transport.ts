/**
 * The one seam to the Realtime upstream. Session logic talks to a `RealtimeTransport` only; the `ws`
 * adapter (`ws-transport.ts`) is the single place that opens sockets. Tests use the same interface over a
 * real socket to the fake server, or an in-memory fake.
 */
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import type { Logger } from "../log.js";
import type { HandledEvent } from "./events.js";

export interface TransportClose {
  readonly code: number;
  readonly reason: string;
}

export interface RealtimeTransport {
  /**
   * Opens the connection. Resolves once it is open; rejects with an `UpstreamConnectError` on refusal,
   * network failure or timeout. Called at most once per transport.
   */
  connect(): Promise<void>;
  /** Sends one client event. Dropped (returns false) unless the connection is open. */
  send(event: RealtimeClientEvent): boolean;
  /**
   * Sends `input_audio_buffer.append` carrying `pcm` (PCM16 LE) as base64, no `event_id`: the event
   * `send` would send, on the hot path (the `ws` adapter writes its JSON text without a stringify).
   * Dropped (returns false) unless the connection is open.
   */
  appendAudio(pcm: Buffer): boolean;
  /** Closes the connection. Idempotent; `onclose` fires exactly once per opened transport. */
  close(code?: number, reason?: string): void;
  /** Validated server events, in arrival order. Events of no interest are not delivered. */
  onevent?: (event: HandledEvent) => void;
  /** The connection ended (by either side). Never fires before `connect()` resolved. */
  onclose?: (info: TransportClose) => void;
}

export interface TransportOptions {
  /** Full URL including `?model=`. */
  readonly url: string;
  readonly apiKey: string;
  readonly connectTimeoutMs: number;
  /** Unknown and invalid upstream frames are reported here at debug level. */
  readonly logger?: Logger;
}

export type RealtimeTransportFactory = (opts: TransportOptions) => RealtimeTransport;

/** Why a connection attempt failed; `status` is the HTTP status of a refused upgrade, if any. */
export class UpstreamConnectError extends Error {
  readonly status: number | undefined;
  readonly outcome: "refused" | "timeout" | "network";
  constructor(outcome: "refused" | "timeout" | "network", message: string, status?: number) {
    super(message);
    this.name = "UpstreamConnectError";
    this.outcome = outcome;
    this.status = status;
  }
}

/** `wss://…/v1/realtime?model=…` from the configured base URL (which may carry its own query). */
export function realtimeUrl(baseUrl: string, model: string): string {
  const u = new URL(baseUrl);
  u.searchParams.set("model", model);
  return u.toString();
}
