/**
 * The conversation-agent program. One call per connection: `transcript {text, context}` → `handled
 * {text}` once the model has answered and every tool it called has run (client tools through the MCP
 * manager, native ones upstream, approvals through the approval queue: a timeout is a denial the model
 * speaks). Text that an ASR turn produced in the last 30 s is answered in that turn's conversation (the
 * model heard the audio); other text goes in as a typed user message. The same `conversation_id`
 * continues the same conversation while it lives. The model's audio of the answer is kept for the
 * `synthesize` call that follows. Failures answer `error {text, code}` with a sentence a person reads.
 *
 * A call waits 120 s for its answer, and longer while a person's approval is pending (the approval's
 * timeout plus a minute), so `approvals.timeout_s` up to 600 s is honoured. A call that ends without its
 * answer (the time is up, Home Assistant closed the connection, the upstream was lost) denies the
 * approvals it still waits for, with source `cancelled` and a reason the UI shows.
 */
import type { PendingApproval, ApprovalQueue } from "../approvals/queue.js";
import type { WyomingErrorCode } from "../errors.js";
import { subscribe } from "../subscribe.js";
import type { AssistConversation } from "../realtime/conversation.js";
import {
  onUpstreamLoss,
  unavailableCode,
  unavailableSentence,
  type AssistSessions,
  type HandleTarget,
} from "./assist.js";
import type { HandleEvent } from "./events.js";
import { WyomingEvents } from "./events.js";
import { KeptAudio } from "./memory.js";
import type { WyomingCall, WyomingCallContext, WyomingHandleProgram } from "./program.js";

/**
 * After a person's approval expires, how long the call still waits: for the denial or the tool's run
 * and the model's spoken answer after it.
 */
export const ANSWER_AFTER_APPROVAL_MS = 60_000;
/** After a response ended `failed`, how long `idle` may take before the call answers anyway. */
const FAILED_GRACE_MS = 2000;

const SENTENCE = {
  unreachable: "The voice assistant cannot reach OpenAI right now. Please try again in a moment.",
  failed: "The voice assistant could not come up with an answer. Please try again.",
  slow: "The voice assistant took too long to answer. Please try again.",
  lost: "The connection to OpenAI was lost before the answer was complete. Please try again.",
  /** Denials of an approval still pending when its call ended: the model and the UI say them. */
  ended:
    "The voice request that asked for it ended (Home Assistant stopped waiting for the answer) " +
    "before anyone decided, so it was not run.",
  endedSlow: "The voice request that asked for it ran out of time before anyone decided, so it was not run.",
} as const;

class AnswerError extends Error {
  readonly code: WyomingErrorCode;
  constructor(code: WyomingErrorCode, sentence: string) {
    super(sentence);
    this.code = code;
  }
}

interface Answer {
  readonly text: string;
  readonly audio: KeptAudio;
}

interface AnswerLimits {
  readonly approvals: ApprovalQueue;
  /** Longest wait with no approval pending. */
  readonly timeoutMs: number;
}

/**
 * Asks `conversation` for its answer (`ask` sends the request) and follows it until nothing is in
 * progress upstream. The audio is kept as it arrives, in `audio`. The wait ends after
 * `limits.timeoutMs`, later while a person's approval is pending (its expiry plus
 * `ANSWER_AFTER_APPROVAL_MS`). When it ends without an answer, approvals this call asked for that are
 * still pending are denied (source `cancelled`), so no later Approve runs a tool nobody hears about.
 */
function answerOf(
  conversation: AssistConversation,
  ask: () => void,
  signal: AbortSignal,
  limits: AnswerLimits,
): Promise<Answer> {
  const asked = new Set<string>();
  const texts: string[] = [];
  const audio = new KeptAudio();
  let failed = false;
  return new Promise<Answer>((resolve, reject) => {
    const onTranscript = (t: { role: "user" | "assistant"; text: string; final: boolean }): void => {
      if (t.role === "assistant" && t.final && t.text.trim()) texts.push(t.text.trim());
    };
    const onAudio = (a: { pcm: Buffer }): void => audio.append(a.pcm);
    const onEnd = (e: { reason: string }): void => {
      if (e.reason !== "failed") return;
      failed = true;
      grace ??= setTimeout(onIdle, FAILED_GRACE_MS);
    };
    const onFailed = (): void => {
      failed = true;
    };
    // The conversation ended or its upstream dropped: say why in words when the reconnect is refused.
    const onLoss = (sentence: string): void => settle(new AnswerError("upstream_unavailable", sentence));
    let dropped = false;
    const onDrop = (): void => {
      dropped = true;
    };
    // A failed response is normally followed by idle; if nothing follows, do not wait for it.
    let grace: NodeJS.Timeout | undefined;
    const onIdle = (): void => {
      if (dropped) return; // the answer went with the dropped session: the loss decides
      if (failed && texts.length === 0) settle(new AnswerError("response_failed", SENTENCE.failed));
      else settle();
    };
    const onAbort = (): void => settle(new AnswerError("internal", "the client went away"));
    const onSlow = (): void => settle(new AnswerError("response_failed", SENTENCE.slow), SENTENCE.endedSlow);
    let deadline = Date.now() + limits.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const armTimer = (): void => {
      clearTimeout(timer);
      timer = setTimeout(onSlow, deadline - Date.now());
      timer.unref();
    };
    armTimer();
    const onApproval = (p: PendingApproval): void => {
      asked.add(p.id);
      const until = Date.now() + (p.expiresAt - p.createdAt) + ANSWER_AFTER_APPROVAL_MS;
      if (until <= deadline) return;
      deadline = until;
      armTimer();
    };
    let detach = (): void => undefined;
    const settle = (err?: AnswerError, denial: string = SENTENCE.ended): void => {
      clearTimeout(timer);
      clearTimeout(grace);
      detach();
      signal.removeEventListener("abort", onAbort);
      if (err) limits.approvals.cancel((p) => asked.has(p.id), denial);
      audio.finish(err ? "cut" : "complete");
      if (err) reject(err);
      else resolve({ text: texts.join(" "), audio });
    };
    const offConversation = subscribe(conversation, {
      transcript: onTranscript,
      audio: onAudio,
      "response.end": onEnd,
      "approval.request": onApproval,
    });
    const offTurns = subscribe(conversation.turns, {
      "response.failed": onFailed,
      idle: onIdle,
      "upstream.lost": onDrop,
    });
    const offLoss = onUpstreamLoss(conversation, SENTENCE.lost, onLoss);
    detach = () => {
      offConversation();
      offTurns();
      offLoss();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    ask();
  });
}

class HandleCall implements WyomingCall<HandleEvent> {
  readonly #ctx: WyomingCallContext;
  readonly #sessions: AssistSessions;
  #asked = false;

  constructor(ctx: WyomingCallContext, sessions: AssistSessions) {
    this.#ctx = ctx;
    this.#sessions = sessions;
  }

  async handle(event: HandleEvent): Promise<void> {
    // One question per call, as Home Assistant sends it.
    if (this.#asked) return;
    this.#asked = true;
    const { peer, turn, logger } = this.#ctx;
    const started = performance.now();
    const conversationId = event.context?.conversation_id;
    let target: HandleTarget;
    try {
      target = await this.#sessions.forHandle(event.text, conversationId, event.context?.device_id);
    } catch (err) {
      logger.warn({ err: err instanceof Error ? err.message : String(err) }, "conversation: no upstream");
      turn.finish("error");
      return peer.fail(unavailableCode(err), unavailableSentence(err, SENTENCE.unreachable));
    }
    const { conversation, heard } = target;
    logger.debug({ heard, chars: event.text.length }, "conversation: asking the model");
    try {
      const answer = await answerOf(
        conversation,
        () => (heard ? conversation.respond() : conversation.sendText(event.text)),
        peer.signal,
        { approvals: this.#sessions.approvals, timeoutMs: this.#sessions.answerTimeoutMs },
      );
      if (answer.text) this.#sessions.keepAnswer(answer.text, answer.audio);
      turn.stage("handled", (performance.now() - started) / 1000);
      await peer.write(
        WyomingEvents.handled({
          text: answer.text,
          ...(conversationId !== undefined ? { context: { conversation_id: conversationId } } : {}),
        }),
      );
      turn.finish("success");
    } catch (err) {
      if (peer.closed) return;
      const e = err instanceof AnswerError ? err : new AnswerError("internal", SENTENCE.failed);
      logger.warn({ code: e.code }, "conversation: no answer");
      turn.finish("error");
      peer.fail(e.code, e.message);
    } finally {
      this.#sessions.release(conversation, conversationId);
    }
  }

  close(): void {
    // Nothing held: the conversation belongs to AssistSessions, the answer wait ends on `peer.signal`.
  }
}

/** The conversation-agent program over the shared `AssistSessions`. */
export function createHandleProgram(sessions: AssistSessions): WyomingHandleProgram {
  return { open: (ctx) => new HandleCall(ctx, sessions) };
}
