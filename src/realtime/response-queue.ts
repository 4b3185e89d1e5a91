/**
 * The session's responses: at most one `response.create` of ours outstanding, at most one asked for next,
 * and the response in flight. A request waits while a response is active, requested or being prepared
 * (client calls running); `conversation_already_has_active_response` sends it again once the active one
 * is done; a turn abandoned before its `response.created` has that response cancelled by id when it comes.
 */
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import type { Logger } from "../log.js";
import type { ResponseEndReason } from "./conversation.js";
import { clientEventId } from "./error-match.js";
import type { TurnMode } from "./session-config.js";

/** How long a sent `response.create` may go without its `response.created`. */
const RESPONSE_CREATED_WAIT_MS = 10_000;
/** How long to wait before asking again when an unknown response was active. */
const BUSY_RETRY_MS = 250;

export interface OpenResponse {
  readonly id: string;
  /** It has said something (`response.start` was emitted). */
  started: boolean;
  endReason: ResponseEndReason | null;
  /** Native MCP calls of this response that finished, and whether it spoke after the last of them. */
  callsDone: number;
  spokeAfterCall: boolean;
  /** Cancelled by `cancelTurn` before it said anything: none of its events reach the listener. */
  dropped?: boolean;
}

export interface ResponseQueueDeps {
  readonly send: (event: RealtimeClientEvent) => void;
  /** Client function calls running: a response waits for their outputs. */
  readonly callsInFlight: () => number;
  readonly closed: () => boolean;
  readonly turn: () => TurnMode;
  readonly log: Logger;
  /** A wait ended without a response (the session may have become idle). */
  readonly settled: () => void;
}

export class ResponseQueue {
  readonly #d: ResponseQueueDeps;
  #response: OpenResponse | null = null;
  #need = false;
  /** A `response.create` was sent and its `response.created` has not arrived yet. */
  #awaiting = false;
  /**
   * `event_id` of our last `response.create`. Kept after a `response.created`: that one may be a response
   * the server started itself, and an `error` naming this id still means ours was refused.
   */
  #createId: string | null = null;
  #retry: NodeJS.Timeout | undefined;
  /** `event_id` of a `response.create` whose turn was abandoned before its `response.created`. */
  #abandonedRequest: string | null = null;
  /** With server turn detection: a turn was abandoned; a response the upstream starts before new speech answers it. */
  #abandonedServerTurn = false;

  constructor(deps: ResponseQueueDeps) {
    this.#d = deps;
  }

  /** The response in flight (between `response.created` and `response.done`). */
  get current(): OpenResponse | null {
    return this.#response;
  }

  /** A `response.create` of ours has no `response.created` yet. */
  get awaiting(): boolean {
    return this.#awaiting;
  }

  /** A response is asked for and not sent yet. */
  get pending(): boolean {
    return this.#need;
  }

  /** `event_id` of our last `response.create`, null before the first and after a busy refusal. */
  get lastRequestId(): string | null {
    return this.#createId;
  }

  /** Asks for one response; several requests before it is sent are one. */
  request(): void {
    this.#need = true;
    this.pump();
  }

  /** Sends the one pending `response.create` once no response is active, requested or being prepared. */
  pump(): void {
    if (!this.#need || this.#d.callsInFlight() > 0 || this.#response !== null || this.#awaiting) return;
    if (this.#d.closed()) return;
    this.#need = false;
    this.#awaiting = true;
    const id = clientEventId("response_create");
    this.#createId = id;
    this.#d.send({ type: "response.create", event_id: id });
    // Never wait forever for a response.created that does not come: that would block every later one.
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => {
      if (!this.#awaiting || this.#createId !== id) return;
      this.#d.log.warn("no response.created for our response.create; no longer waiting for it");
      this.#awaiting = false;
      this.pump();
      this.#d.settled();
    }, RESPONSE_CREATED_WAIT_MS);
    this.#retry.unref();
  }

  /** `response.created`: the response in flight from now on (cancelled at once if its turn was abandoned). */
  onCreated(id: string): void {
    const abandoned = this.#awaiting ? this.#abandonedRequest === this.#createId : this.#abandonedServerTurn;
    this.#awaiting = false;
    this.#abandonedRequest = null;
    this.#abandonedServerTurn = false;
    this.#response = { id, started: false, endReason: null, callsDone: 0, spokeAfterCall: false };
    // The answer to a turn the listener abandoned while it was being asked for.
    if (abandoned) this.#abandon();
  }

  /** Our `response.create` met a response already active: send it again once that one is done. */
  onBusy(): void {
    // An abandoned turn's request is not sent again (a newer turn's may be waiting: `pending`).
    if (this.#abandonedRequest === null || this.#abandonedRequest !== this.#createId) this.#need = true;
    this.#abandonedRequest = null;
    this.#awaiting = false;
    this.#createId = null;
    if (this.#response !== null || !this.#need) return; // its response.done sends ours
    // The active response is one we have not heard of yet; try again shortly rather than at once.
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => this.pump(), BUSY_RETRY_MS);
    this.#retry.unref();
  }

  /** Our outstanding `response.create` was refused for another reason: no response comes. */
  onRefused(): void {
    this.#awaiting = false;
  }

  /** The listener spoke: a response the upstream starts now answers the new turn. */
  onSpeechStarted(): void {
    this.#abandonedServerTurn = false;
  }

  /**
   * A response event of `responseId` is to be emitted: marks the response started. True the first time
   * (emit `response.start`).
   */
  start(responseId: string): boolean {
    const r = this.#response;
    if (!r || r.id !== responseId) return false;
    if (r.callsDone > 0) r.spokeAfterCall = true;
    if (r.started) return false;
    r.started = true;
    return true;
  }

  /** The response was abandoned before it spoke: its events never reach the listener. */
  isDropped(responseId: string): boolean {
    return this.#response?.dropped === true && this.#response.id === responseId;
  }

  /** `response.done`: the response that ended (null when none was known). Call `afterDone` next. */
  take(): OpenResponse | null {
    const r = this.#response;
    this.#response = null;
    return r;
  }

  /**
   * After `take()` and the events of the end: a native call ran in `r` and nothing was said after it, so
   * the model is asked to speak about it; the next request is sent.
   */
  afterDone(r: OpenResponse | null, completed: boolean): void {
    if (r && r.callsDone > 0 && !r.spokeAfterCall && completed) this.#need = true;
    this.pump();
  }

  /** A native MCP call finished: the response it ran in speaks about it, or one is asked for. */
  nativeCallFinished(): void {
    const r = this.#response;
    if (!r) return this.request();
    r.callsDone++;
    r.spokeAfterCall = false;
  }

  /** Cancels the response in flight, if any (`reason` unless one was set before). */
  cancel(reason: ResponseEndReason = "cancelled"): void {
    if (!this.#response) return;
    this.#response.endReason ??= reason;
    this.#d.send({ type: "response.cancel" });
  }

  /** Barge-in: the response in flight ends `interrupted`. */
  interrupt(): void {
    if (!this.#response) return;
    this.#response.endReason = "interrupted";
    this.#d.send({ type: "response.cancel" });
  }

  /**
   * The listener abandoned its turn: nothing more is asked for, and the response in flight or asked for
   * is cancelled; one not created yet is cancelled when it is.
   */
  cancelTurn(): void {
    this.#need = false;
    if (this.#awaiting) this.#abandonedRequest = this.#createId;
    else if (this.#d.turn() === "server_vad" && !this.#response) this.#abandonedServerTurn = true;
    this.#abandon();
  }

  /** The socket closed: no more waits. Returns the response that was in flight. */
  close(): OpenResponse | null {
    clearTimeout(this.#retry);
    return this.take();
  }

  /** Cancels the response in flight by id; one that has not spoken yet never reaches the listener. */
  #abandon(): void {
    const r = this.#response;
    if (!r) return;
    if (!r.started) r.dropped = true;
    if (r.endReason !== null) return;
    r.endReason = "cancelled";
    this.#d.send({ type: "response.cancel", response_id: r.id });
  }
}
