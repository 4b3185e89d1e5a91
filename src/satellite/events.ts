/**
 * The satellite core's contract with its wires and with the service: the device's states, the
 * events the core emits ({@link CoreEvents}), what it needs ({@link CoreDeps}) and what the wire
 * negotiated ({@link CoreSession}). Types only; `core.ts` re-exports them.
 */
import type { PcmRate } from "../audio/resampler.js";
import type { ApprovalQueue } from "../approvals/queue.js";
import type { DeviceRef } from "../cost/budget.js";
import type { SatelliteErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ConversationSource } from "../realtime/conversation.js";
import type { SatelliteLimits } from "./limits.js";

/** What the device is doing, as every wire reports it in its own words. */
export type SatelliteState = "idle" | "listening" | "thinking" | "speaking" | "error";

/** Who ends a turn: the upstream's VAD, or the device (`endTurn`). */
export type TurnMode = "server_vad" | "client";

/**
 * How a reply ended, as a satellite sees it. `failed`: the upstream could not finish the answer (an
 * `error` `response_failed` came first).
 */
export type ReplyEndReason = "done" | "cancelled" | "interrupted" | "failed";

/** How an approval ended: a person's answer (on any device or the UI), no answer in time, or withdrawn. */
export type ApprovalOutcome = "approved" | "denied" | "timeout" | "cancelled";

/** An approval to show on the device; answer it with `answerApproval`. */
export interface ApprovalPrompt {
  id: string;
  server: string;
  tool: string;
  /** The raw JSON arguments string as the model produced it. */
  arguments: string;
  /** Whole seconds left before no answer counts as a denial. */
  timeoutS: number;
}

export interface CoreEvents {
  /** The device's state changed (never emitted twice in a row with the same value). */
  state: [SatelliteState];
  /** The upstream heard the user start speaking; emitted before the barge-in it may cause. */
  "speech.start": [];
  /** A reply begins; its audio follows once every earlier reply has been sent. */
  "response.start": [{ id: string }];
  /** A reply ended; emitted once per `response.start`, after its last audio frame. */
  "response.end": [{ id: string; reason: ReplyEndReason }];
  /** One paced frame of reply audio: PCM16 LE at the output rate, even length, a fresh Buffer. */
  audio: [Buffer];
  /** Stop playing and drop queued audio now (barge-in, cancel, or the upstream stopped the reply). */
  clear: [];
  transcript: [{ role: "user" | "assistant"; text: string; final: boolean }];
  tool: [{ name: string; server: string; status: "started" | "completed" | "failed" }];
  approval: [ApprovalPrompt];
  /**
   * An approval this device was shown has ended, wherever it was answered (this device, another,
   * the web UI), or it timed out or was withdrawn: take the prompt down. Exactly once per `approval`.
   */
  "approval.done": [{ id: string; outcome: ApprovalOutcome }];
  /**
   * Something the device should be told. With `close` the connection cannot go on (an internal
   * failure, a satellite that does not read): the wire sends it and closes with the code's status.
   */
  error: [{ code: SatelliteErrorCode; message: string; close: boolean }];
  /** The conversation ended (idle timeout, upstream gone); the connection stays and may start another. */
  end: [{ reason: string }];
}

/** What the core needs from the service; the same for every wire. */
export interface CoreDeps {
  conversations: ConversationSource;
  approvals: ApprovalQueue;
  logger: Logger;
  metrics: Metrics;
  limits: SatelliteLimits;
  /** `satellites.conversation_idle_s`: a conversation ends after this long without speech. */
  conversationIdleS: number;
  /** Monotonic milliseconds; injectable for tests. */
  now?: () => number;
}

/** What the wire negotiated with the device. */
export interface CoreSession {
  /** The device's id (hello `client_id`, configured device id, or address). */
  satelliteId: string;
  /** Whose spend and budget the conversations are (default: `satelliteId` on v1). */
  device?: DeviceRef;
  turn: TurnMode;
  audio: { inRate: PcmRate; outRate: PcmRate };
  /** Reply audio kept buffered on the device ahead of its play head (default 200 ms). */
  leadMs?: number;
  /** Bytes the wire has accepted but not yet written to the OS (reply audio backs off on it). */
  sendBuffer: () => number;
}
