/**
 * The conversation-agent program. One call per connection: `transcript {text, context}` → `handled
 * {text}` once the model has answered and every tool it called has run (client tools through the MCP
 * manager, native ones upstream, approvals through the approval queue: a timeout is a denial the model
 * speaks). Text that an ASR turn produced in the last 30 s is answered in that turn's conversation (the
 * model heard the audio); other text goes in as a typed user message. The same `conversation_id`
 * continues the same conversation while it lives. The model's audio of the answer is kept for the
 * `synthesize` call that follows. Failures answer `error {text, code}` with a sentence a person reads.
 */
import type { WyomingErrorCode } from "../errors.js";
import { subscribe } from "../subscribe.js";
import type { AssistConversation } from "../realtime/conversation.js";
import { unavailableCode, unavailableSentence, type AssistSessions, type HandleTarget } from "./assist.js";
import type { HandleEvent } from "./events.js";
import { WyomingEvents } from "./events.js";
import { KeptAudio } from "./memory.js";
import type { WyomingCall, WyomingCallContext, WyomingHandleProgram } from "./program.js";

/** Longest a call waits for the answer (tool calls and a person's approval included). */
const ANSWER_TIMEOUT_MS = 120_000;
/** After a response ended `failed`, how long `idle` may take before the call answers anyway. */
const FAILED_GRACE_MS = 2000;

const SENTENCE = {
  unreachable: "The voice assistant cannot reach OpenAI right now. Please try again in a moment.",
  failed: "The voice assistant could not come up with an answer. Please try again.",
  slow: "The voice assistant took too long to answer. Please try again.",
  lost: "The connection to OpenAI was lost before the answer was complete. Please try again.",
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

/**
 * Asks `conversation` for its answer (`ask` sends the request) and follows it until nothing is in
 * progress upstream. The audio is kept as it arrives, in `audio`.
 */
function answerOf(conversation: AssistConversation, ask: () => void, signal: AbortSignal): Promise<Answer> {
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
    const onError = (e: { fatal: boolean }): void => {
      if (e.fatal) settle(new AnswerError("upstream_unavailable", SENTENCE.lost));
    };
    const onClosed = (): void => settle(new AnswerError("upstream_unavailable", SENTENCE.lost));
    // A failed response is normally followed by idle; if nothing follows, do not wait for it.
    let grace: NodeJS.Timeout | undefined;
    const onIdle = (): void => {
      if (failed && texts.length === 0) settle(new AnswerError("response_failed", SENTENCE.failed));
      else settle();
    };
    const onAbort = (): void => settle(new AnswerError("internal", "the client went away"));
    const timer = setTimeout(
      () => settle(new AnswerError("response_failed", SENTENCE.slow)),
      ANSWER_TIMEOUT_MS,
    );
    timer.unref();
    let detach = (): void => undefined;
    const settle = (err?: AnswerError): void => {
      clearTimeout(timer);
      clearTimeout(grace);
      detach();
      signal.removeEventListener("abort", onAbort);
      audio.finish(err ? "cut" : "complete");
      if (err) reject(err);
      else resolve({ text: texts.join(" "), audio });
    };
    const offConversation = subscribe(conversation, {
      transcript: onTranscript,
      audio: onAudio,
      "response.end": onEnd,
      error: onError,
      closed: onClosed,
    });
    const offTurns = subscribe(conversation.turns, {
      "response.failed": onFailed,
      idle: onIdle,
      "upstream.lost": onClosed,
    });
    detach = () => {
      offConversation();
      offTurns();
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
