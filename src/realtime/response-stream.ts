/**
 * What the listener hears of the session's responses: `response.start` once, when a response first says
 * something; its audio and transcript; `response.end` with why it ended; a failure before any audio as
 * an `error` with words to say. A response abandoned before it spoke is never heard at all. The
 * response's state lives in the `ResponseQueue`; this turns upstream response events into listener events.
 */
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ConversationEvents, ResponseEndReason, TurnEvents } from "./conversation.js";
import type { HandledEvent, ServerEventOf } from "./events.js";
import type { ResponseQueue } from "./response-queue.js";
import { failedResponseMessage } from "./upstream-error.js";

type All = ConversationEvents & TurnEvents;
/** The listener events a response stream emits. */
export type ResponseListenerEvents = Pick<
  All,
  "response.start" | "audio" | "transcript" | "response.end" | "response.failed"
>;

export interface ResponseStreamDeps {
  readonly queue: ResponseQueue;
  readonly emit: <K extends keyof ResponseListenerEvents>(
    event: K,
    ...args: ResponseListenerEvents[K]
  ) => void;
  /** A conversation `error` (only when someone listens). */
  readonly error: (e: All["error"][0]) => void;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** A response ended (the session may have become idle). */
  readonly settled: () => void;
}

export class ResponseStream {
  readonly #d: ResponseStreamDeps;

  constructor(deps: ResponseStreamDeps) {
    this.#d = deps;
  }

  /** Takes the session's response events; true when `e` was one. */
  route(e: HandledEvent): boolean {
    const { queue, emit } = this.#d;
    switch (e.type) {
      case "response.created":
        queue.onCreated(e.response.id ?? "");
        return true;
      case "response.output_audio.delta":
        if (queue.isDropped(e.response_id)) return true;
        this.#start(e.response_id);
        emit("audio", { responseId: e.response_id, itemId: e.item_id, pcm: Buffer.from(e.delta, "base64") });
        return true;
      case "response.output_audio_transcript.delta":
        if (queue.isDropped(e.response_id)) return true;
        this.#start(e.response_id);
        emit("transcript", { role: "assistant", text: e.delta, final: false });
        return true;
      case "response.output_audio_transcript.done":
        if (queue.isDropped(e.response_id)) return true;
        emit("transcript", { role: "assistant", text: e.transcript, final: true });
        return true;
      case "response.done":
        this.#done(e);
        return true;
      default:
        return false;
    }
  }

  #start(id: string): void {
    if (this.#d.queue.start(id)) this.#d.emit("response.start", { id });
  }

  #done(e: ServerEventOf<"response.done">): void {
    const { queue, emit } = this.#d;
    const res = e.response;
    if (res.status === "failed")
      emit("response.failed", {
        responseId: res.id ?? "",
        message: res.status_details?.error?.code ?? res.status_details?.error?.type ?? "failed",
      });
    const r = queue.take();
    const failed = res.status === "failed" || res.status === "incomplete";
    if (r?.started) {
      let reason: ResponseEndReason = "done";
      if (res.status === "cancelled")
        reason =
          r.endReason ?? (res.status_details?.reason === "turn_detected" ? "interrupted" : "cancelled");
      else if (failed) reason = "failed";
      emit("response.end", { id: r.id, reason });
    } else if (r && failed && !r.dropped) {
      // Nothing was said: the listener must still hear that this turn is over, and why.
      const details = res.status_details;
      const code = details?.error?.code ?? undefined;
      this.#d.log.warn({ status: res.status, reason: details?.reason, code }, "upstream response failed");
      this.#d.metrics.errors.inc({ code: "upstream_response_failed" });
      this.#d.error({
        code: "response_failed",
        message: failedResponseMessage(res.status, details?.reason, code),
        fatal: false,
      });
      emit("response.end", { id: r.id, reason: "failed" });
    }
    queue.afterDone(r, res.status === "completed");
    this.#d.settled();
  }
}
