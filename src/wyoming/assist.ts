/**
 * The Realtime side of the three Wyoming programs: which conversation a call belongs to, and what the
 * programs hand each other through `memory.ts`. Owns the conversations it starts and ends them when
 * nobody can use them any more: an ASR turn that no `handle` claimed within 30 s (so a command Home
 * Assistant answered itself creates no response and runs no tool), and a conversation whose
 * `conversation_id` has been quiet for `idleEndMs`.
 */
import type { ApprovalQueue } from "../approvals/queue.js";
import type { Config } from "../config/model.js";
import { BudgetExceededError, LimitError } from "../errors.js";
import { UpstreamUnavailableError } from "../realtime/upstream-error.js";
import type { Logger } from "../log.js";
import type { AssistConversation, ConversationOptions, SpeechSource } from "../realtime/conversation.js";
import { subscribe } from "../subscribe.js";
import type { KeptAudio } from "./memory.js";
import { ANSWER_TTL_MS, ASR_TURN_TTL_MS, ExpiringTextIndex } from "./memory.js";

/**
 * Why no conversation could be had, as a sentence for people: the upstream's reason in words ("OpenAI
 * quota exceeded", "OpenAI rejected the API key") or the conversation cap's, else `fallback`.
 */
export function unavailableSentence(err: unknown, fallback: string): string {
  if (err instanceof BudgetExceededError) return err.message;
  if (err instanceof UpstreamUnavailableError || err instanceof LimitError)
    return `The voice assistant cannot answer right now: ${err.message}.`;
  return fallback;
}

/** The Wyoming error code of a call that got no conversation. */
export function unavailableCode(err: unknown): "budget_exceeded" | "upstream_unavailable" {
  return err instanceof BudgetExceededError ? "budget_exceeded" : "upstream_unavailable";
}

/** After the upstream dropped, how long a call waits for the reconnect's outcome before saying it was lost. */
export const LOST_VERDICT_MS = 1000;

/**
 * For a call that cannot outlive its conversation's upstream: `lost` is called once, with the sentence
 * to say, when the conversation ends (a fatal error's reason in words, else `fallback`) or, after a drop,
 * when the reconnect's outcome is known. A reconnect refused within `LOST_VERDICT_MS` of the drop (quota,
 * key) is told by its reason; otherwise `fallback` is said then. Returns the function that stops following.
 */
export function onUpstreamLoss(
  conversation: AssistConversation,
  fallback: string,
  lost: (sentence: string) => void,
): () => void {
  let timer: NodeJS.Timeout | undefined;
  const tell = (sentence: string): void => {
    stop();
    lost(sentence);
  };
  const offConversation = subscribe(conversation, {
    error: (e: { message: string; fatal: boolean }) => {
      if (e.fatal) tell(unavailableSentence(new UpstreamUnavailableError("error", e.message), fallback));
    },
    closed: () => tell(fallback),
  });
  const offTurns = subscribe(conversation.turns, {
    "upstream.lost": () => {
      timer ??= setTimeout(() => tell(fallback), LOST_VERDICT_MS);
      timer.unref();
    },
  });
  const stop = (): void => {
    clearTimeout(timer);
    offConversation();
    offTurns();
  };
  return stop;
}

/** Spend of Wyoming calls that name no Home Assistant device. */
const WYOMING_DEVICE = { id: "wyoming", route: "wyoming" } as const;

/** What the programs need of the realtime engine. */
export interface AssistEngine extends SpeechSource {
  startAssist(opts: ConversationOptions): Promise<AssistConversation>;
  /** Opens the speaker session ahead of the first `speak`. */
  prepareSpeech?(): Promise<void>;
}

export interface AssistSessionsOptions {
  readonly engine: AssistEngine;
  /** `openai.voice` (the conversations' voice) and the `wyoming` options. */
  readonly config: Pick<Config, "openai" | "wyoming">;
  /** The queue the conversations ask a person through: a conversation call that ends denies its own. */
  readonly approvals: ApprovalQueue;
  readonly logger: Logger;
  /**
   * Longest a conversation call waits for its answer with no approval pending. Default 120 s; each
   * approval the call waits for extends it to the approval's expiry plus `ANSWER_AFTER_APPROVAL_MS`.
   */
  readonly answerTimeoutMs?: number;
  /** Epoch ms. */
  readonly now?: () => number;
  /** A conversation bound to a `conversation_id` ends after this long without a call. Default 5 min. */
  readonly idleEndMs?: number;
  /** How often expired entries are swept. Default 5 s. */
  readonly sweepMs?: number;
  /** How long an ASR turn waits for its `handle` call. Default `ASR_TURN_TTL_MS` (30 s). */
  readonly asrTurnTtlMs?: number;
  /** How long a handled answer's audio waits for `synthesize`. Default `ANSWER_TTL_MS` (60 s). */
  readonly answerTtlMs?: number;
}

/** Where a `handle` call's text goes. */
export interface HandleTarget {
  readonly conversation: AssistConversation;
  /** True when the conversation heard the text as audio (an ASR turn): answer with `respond()`. */
  readonly heard: boolean;
}

interface Bound {
  readonly conversation: AssistConversation;
  lastUsed: number;
  busy: number;
}

export class AssistSessions {
  readonly #engine: AssistEngine;
  /** The voice every conversation speaks in, so the voice of every kept answer. */
  readonly #voice: string;
  readonly #listening: { readonly noSpeechMs: number; readonly maxTurnMs: number };
  readonly #approvals: ApprovalQueue;
  readonly #answerTimeoutMs: number;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #idleEndMs: number;
  readonly #turns: ExpiringTextIndex<AssistConversation>;
  readonly #answers: ExpiringTextIndex<KeptAudio>;
  readonly #bound = new Map<string, Bound>();
  /** Conversations started here and not ended yet. */
  readonly #owned = new Set<AssistConversation>();
  readonly #sweep: NodeJS.Timeout;

  constructor(opts: AssistSessionsOptions) {
    this.#engine = opts.engine;
    this.#voice = opts.config.openai.voice;
    this.#approvals = opts.approvals;
    this.#answerTimeoutMs = opts.answerTimeoutMs ?? 120_000;
    this.#listening = {
      noSpeechMs: opts.config.wyoming.no_speech_s * 1000,
      maxTurnMs: opts.config.wyoming.max_turn_s * 1000,
    };
    this.#log = opts.logger;
    this.#now = opts.now ?? Date.now;
    this.#idleEndMs = opts.idleEndMs ?? 5 * 60_000;
    this.#turns = new ExpiringTextIndex(opts.asrTurnTtlMs ?? ASR_TURN_TTL_MS);
    this.#answers = new ExpiringTextIndex(opts.answerTtlMs ?? ANSWER_TTL_MS);
    this.#sweep = setInterval(() => this.sweep(), opts.sweepMs ?? 5000);
    this.#sweep.unref();
  }

  get engine(): AssistEngine {
    return this.#engine;
  }

  get approvals(): ApprovalQueue {
    return this.#approvals;
  }

  /** See `AssistSessionsOptions.answerTimeoutMs`. */
  get answerTimeoutMs(): number {
    return this.#answerTimeoutMs;
  }

  /** How long a speech-to-text call listens, from its first audio (`wyoming.no_speech_s`, `max_turn_s`). */
  get listening(): { readonly noSpeechMs: number; readonly maxTurnMs: number } {
    return this.#listening;
  }

  /** A conversation for one ASR call: upstream turn detection ends the turn, without a response. */
  listen(): Promise<AssistConversation> {
    return this.#start({ turn: "server_vad", createResponse: false, device: WYOMING_DEVICE });
  }

  /** The ASR call delivered `text` from `conversation`; a `handle` call may claim it for 30 s. */
  heard(text: string, conversation: AssistConversation): void {
    this.#turns.put(text, conversation, this.#now());
  }

  /** Ends a conversation nobody will use (an ASR call that failed or was abandoned before its transcript). */
  discard(conversation: AssistConversation): void {
    this.#turns.remove(conversation);
    for (const b of this.#bound.values()) if (b.conversation === conversation) return;
    void conversation.end("discarded");
  }

  /**
   * The conversation a `handle` call continues: the ASR turn that produced `text` (carrying the turns of
   * the conversation bound to `conversationId`, if that is another one), else the bound conversation,
   * else a new one. The result is bound to `conversationId` and marked busy until `release`.
   */
  async forHandle(
    text: string,
    conversationId: string | undefined,
    deviceId?: string,
  ): Promise<HandleTarget> {
    const device = deviceId === undefined ? WYOMING_DEVICE : { id: deviceId, route: "wyoming" as const };
    const now = this.#now();
    const heardBy = this.#turns.take(text, now);
    const bound = conversationId === undefined ? undefined : this.#bound.get(conversationId);
    let target: HandleTarget;
    if (heardBy) {
      if (bound && bound.conversation !== heardBy) {
        heardBy.prependHistory(bound.conversation.history);
        this.#bound.delete(conversationId!);
        void bound.conversation.end("continued in a new turn");
      }
      target = { conversation: heardBy, heard: true };
    } else if (bound) target = { conversation: bound.conversation, heard: false };
    else target = { conversation: await this.#start({ turn: "client", device }), heard: false };
    // The turn's speech-to-text counts for the device too; a device over its budget gets no answer.
    try {
      target.conversation.attribute(device);
    } catch (err) {
      if (target.conversation !== bound?.conversation) void target.conversation.end("budget_exceeded");
      throw err;
    }
    if (conversationId !== undefined) {
      const entry = this.#bound.get(conversationId);
      if (entry?.conversation === target.conversation) {
        entry.lastUsed = now;
        entry.busy++;
      } else this.#bound.set(conversationId, { conversation: target.conversation, lastUsed: now, busy: 1 });
    }
    return target;
  }

  /** The `handle` call on `conversationId` is over; an unbound conversation ends now. */
  release(conversation: AssistConversation, conversationId: string | undefined): void {
    const entry = conversationId === undefined ? undefined : this.#bound.get(conversationId);
    if (entry?.conversation === conversation) {
      entry.busy = Math.max(0, entry.busy - 1);
      entry.lastUsed = this.#now();
      return;
    }
    for (const b of this.#bound.values()) if (b.conversation === conversation) return;
    void conversation.end("answered");
  }

  /** Keeps the model's audio of a handled answer for a `synthesize` of the same text (60 s). */
  keepAnswer(text: string, audio: KeptAudio): void {
    this.#answers.put(text, audio, this.#now());
  }

  /**
   * The model's audio of a recent answer with this text, if any, when it is in `voice`: absent
   * (any voice will do) or the conversations' own. In another voice the text must be spoken anew.
   */
  answer(text: string, voice?: string): KeptAudio | undefined {
    if (voice !== undefined && voice !== this.#voice) return undefined;
    return this.#answers.newest(text, this.#now());
  }

  /** Ends what expired: unclaimed ASR turns, quiet conversations; forgets old answers. */
  sweep(): void {
    const now = this.#now();
    for (const conversation of this.#turns.sweep(now)) {
      if ([...this.#bound.values()].some((b) => b.conversation === conversation)) continue;
      this.#log.debug("an ASR turn was not followed by a conversation call; ending its conversation");
      void conversation.end("unclaimed");
    }
    this.#answers.sweep(now);
    for (const [id, b] of this.#bound)
      if (b.busy === 0 && now - b.lastUsed >= this.#idleEndMs) {
        this.#bound.delete(id);
        void b.conversation.end("idle");
      }
  }

  /** Ends every conversation started here. */
  async close(): Promise<void> {
    clearInterval(this.#sweep);
    this.#bound.clear();
    await Promise.all([...this.#owned].map((c) => c.end("shutdown")));
  }

  async #start(opts: ConversationOptions): Promise<AssistConversation> {
    const conversation = await this.#engine.startAssist(opts);
    this.#owned.add(conversation);
    conversation.once("closed", () => {
      this.#owned.delete(conversation);
      this.#turns.remove(conversation);
      for (const [id, b] of this.#bound) if (b.conversation === conversation) this.#bound.delete(id);
    });
    return conversation;
  }
}
