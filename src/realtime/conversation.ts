/**
 * Contract between a voice front end (the satellite bridge, the talk page) and the realtime engine.
 * Audio crossing this seam is PCM16 mono at 24 kHz (the Realtime rate); resampling is the bridge's job.
 */
import type { EventEmitter } from "node:events";
import type { PendingApproval } from "../approvals/queue.js";

export type ResponseEndReason = "done" | "cancelled" | "interrupted" | "failed";

export interface ConversationEvents {
  /** Upstream VAD heard the user start speaking (barge-in trigger while audio plays). */
  "speech.started": [];
  /** Upstream VAD heard the user stop (start of the turn-latency clock). */
  "speech.stopped": [];
  "response.start": [{ id: string }];
  /** A chunk of reply audio, PCM16 24 kHz; `itemId` is what `truncate` takes. */
  audio: [{ responseId: string; itemId: string; pcm: Buffer }];
  "response.end": [{ id: string; reason: ResponseEndReason }];
  transcript: [{ role: "user" | "assistant"; text: string; final: boolean }];
  tool: [{ name: string; server: string; status: "started" | "completed" | "failed" }];
  /** A person must decide; answer through the ApprovalQueue. */
  "approval.request": [PendingApproval];
  /**
   * Non-fatal errors are informational; a fatal one (`upstream_unavailable`) is followed by `closed`.
   * `response_failed` (non-fatal): the answer failed before any audio; `message` is a sentence to say,
   * and `response.end` `failed` follows.
   */
  error: [{ code: string; message: string; fatal: boolean }];
  /** Emitted exactly once; no events follow it. */
  closed: [{ reason: string }];
}

export interface Conversation extends EventEmitter<ConversationEvents> {
  readonly id: string;
  /** Appends microphone audio (PCM16 24 kHz mono, even byte count). Dropped after close. */
  appendAudio(pcm: Buffer): void;
  /** Client-side end of turn: commit the input buffer and ask for a response. */
  commitAndRespond(): void;
  /** Stops the current response, if any (`response.end` reason `cancelled`). */
  cancelResponse(): void;
  /**
   * Barge-in: the listener heard only `audioEndMs` of item `itemId`. Cancels the response
   * in flight (`response.end` reason `interrupted`) and truncates the item upstream.
   */
  interrupt(itemId: string, audioEndMs: number): void;
  /** Ends the conversation and releases its upstream session. Idempotent. */
  end(reason: string): Promise<void>;
}

export interface ConversationOptions {
  /** `server`: upstream VAD decides turns; `client`: the satellite sends turn.end. */
  turn: "server_vad" | "client";
  satelliteId?: string;
}

export interface ConversationSource {
  /**
   * Takes a warm session when one is ready, otherwise connects a new one. While the upstream cannot be
   * used it rejects with an error whose `code` is `"upstream_unavailable"` and whose `message` is the
   * reason in words, ready to show or say ("OpenAI rejected the API key", "OpenAI quota exceeded", the
   * upstream's own message for a rejected configuration, …).
   */
  start(opts: ConversationOptions): Promise<Conversation>;
}
