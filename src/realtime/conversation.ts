/**
 * Contract between a voice front end (the satellite bridge, the talk page) and the realtime engine.
 * Audio crossing this seam is PCM16 mono at 24 kHz (the Realtime rate); resampling is the bridge's job.
 */
import type { EventEmitter } from "node:events";
import type { PendingApproval } from "../approvals/queue.js";
import type { DeviceRef } from "../cost/budget.js";
import type { RoutedTool, ToolCallOutcome } from "../mcp/types.js";
import type { TranscriptTurn } from "./session-config.js";

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

/** What an `AssistConversation` also reports: the user's turns as the upstream sees them. */
export interface TurnEvents {
  /** The upstream committed the user's audio as item `itemId` (its turn detection ended the turn, or `commit()`). */
  "input.committed": [{ itemId: string }];
  /** The upstream's final transcript of user item `itemId`, emitted the moment it arrives. */
  "user.transcript": [{ itemId: string; text: string }];
  /** The upstream could not transcribe user item `itemId`. */
  "user.transcript.failed": [{ itemId: string; message: string }];
  /** A response ended with status `failed` (with or without output). */
  "response.failed": [{ responseId: string; message: string }];
  /** Nothing in progress upstream: no response, tool call, approval or user speech. */
  idle: [];
  /**
   * The upstream session ended unexpectedly: audio not yet committed and a response in flight are lost.
   * The conversation reconnects (with its transcripts as context) or ends with `closed`.
   */
  "upstream.lost": [];
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
   * The listener abandoned its turn (a cancel, a stop word, a new push-to-talk): the input audio not yet
   * committed is cleared upstream and the response in flight, or asked for and not yet created, is
   * cancelled. An answer that has not spoken yet never reaches the listener (no `response.start`, audio
   * or transcript), even when its `response.created` arrives after this call.
   */
  cancelTurn(): void;
  /**
   * Barge-in: the listener heard only `audioEndMs` of item `itemId`. Cancels the response
   * in flight (`response.end` reason `interrupted`) and truncates the item upstream.
   */
  interrupt(itemId: string, audioEndMs: number): void;
  /** Ends the conversation and releases its upstream session. Idempotent. */
  end(reason: string): Promise<void>;
}

/** Tools of one conversation only (e.g. a voice device's timers); `callTool` never rejects. */
export interface ConversationTools {
  tools(): readonly RoutedTool[];
  callTool(name: string, argsJson: string): Promise<ToolCallOutcome>;
}

export interface ConversationOptions {
  /** `server`: upstream VAD decides turns; `client`: the satellite sends turn.end. */
  turn: "server_vad" | "client";
  satelliteId?: string;
  /**
   * With `turn: "server_vad"`: false makes upstream turn detection end (commit) turns without creating a
   * response; the front end asks for one with `respond()`. Default true.
   */
  createResponse?: boolean;
  /** Whose conversation this is, for its cost and budgets. Default: `satelliteId` on `v1`, else `unknown`. */
  device?: DeviceRef;
  /**
   * Tools the model may call in this conversation only, offered beside the MCP tools (a name both have
   * goes to these) and called without an approval.
   */
  tools?: ConversationTools;
}

/**
 * A conversation whose responses the front end asks for (the Assist pipeline's speech-to-text and
 * conversation agent are separate calls). Commands are dropped after close, like the others.
 */
export interface AssistConversation extends Conversation {
  /** The user's turns as the upstream sees them; silent after `closed`. */
  readonly turns: EventEmitter<TurnEvents>;
  /** Commits the input audio now as a user turn, without a response (`input.committed` follows). */
  commit(): void;
  /** Creates a response to the committed turns; tool calls it makes are answered and spoken as usual. */
  respond(): void;
  /** Adds a typed user message and creates a response to it. */
  sendText(text: string): void;
  /**
   * Tells the upstream transcription the language of the user's speech (ISO-639-1, e.g. `en`; a
   * region such as `de-DE` is reduced to `de`). Applies to audio committed from now on.
   */
  setInputLanguage(language: string): void;
  /** Final transcripts kept for carry-over, oldest first. */
  readonly history: readonly TranscriptTurn[];
  /**
   * Puts earlier turns (oldest first, e.g. another conversation's `history`) before this conversation's
   * own and gives the model a summary of them.
   */
  prependHistory(turns: readonly TranscriptTurn[]): void;
  /**
   * Names the device this conversation turned out to serve (a Wyoming call whose context names Home
   * Assistant's device): its spend so far moves there. Throws `BudgetExceededError` when that device's
   * budget is used up today.
   */
  attribute(device: DeviceRef): void;
}

export interface SpeechOptions {
  /** A Realtime voice; default the configured one. */
  voice?: string;
  /** Each chunk of the spoken audio, PCM16 24 kHz mono, in order, as it arrives. */
  onAudio: (pcm: Buffer) => void;
  /** Aborting cancels the response upstream and rejects. */
  signal?: AbortSignal;
}

export interface SpeechSource {
  /**
   * Speaks `text` verbatim in the model's voice through an out-of-band response of a warm session: no
   * conversation hears it. Resolves after the last `onAudio`; rejects when the upstream fails or refuses.
   */
  speak(text: string, opts: SpeechOptions): Promise<void>;
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
