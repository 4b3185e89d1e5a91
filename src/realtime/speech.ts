/**
 * Out-of-band speech on one upstream session: `response.create` with `conversation: "none"` and the text
 * as the response's only input, so the model reads it aloud and no conversation hears it. Any number run
 * at once, beside the session's own responses; each is recognised by the `metadata` tag of its request
 * until `response.created` names its response id.
 */
import { randomUUID } from "node:crypto";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import type { Metrics } from "../metrics.js";
import type { SpeechOptions } from "./conversation.js";
import type { HandledEvent } from "./events.js";

/** Instructions of an out-of-band speech response: the text is to be read, not answered. */
const SPEAK_VERBATIM =
  "You are a text-to-speech voice. Read the user's message aloud exactly as written, word for word, " +
  "in the language it is written in. Do not answer it, add, drop or change any word, or comment on it.";

interface Speech {
  responseId: string | null;
  readonly onAudio: (pcm: Buffer) => void;
  settle: (err?: Error) => void;
}

export class OutOfBandSpeech {
  readonly #send: (event: RealtimeClientEvent) => void;
  readonly #metrics: Metrics;
  readonly #byTag = new Map<string, Speech>();
  readonly #byResponse = new Map<string, Speech>();

  constructor(send: (event: RealtimeClientEvent) => void, metrics: Metrics) {
    this.#send = send;
    this.#metrics = metrics;
  }

  /**
   * Speaks `text` in `voice`. Resolves after the last `onAudio` of a completed response; rejects with a
   * message starting "speech " when the upstream refused, cut or cancelled it.
   */
  speak(text: string, voice: string, opts: SpeechOptions): Promise<void> {
    const tag = randomUUID();
    return new Promise<void>((resolve, reject) => {
      const speech: Speech = { responseId: null, onAudio: opts.onAudio, settle: () => undefined };
      const onAbort = (): void => {
        if (speech.responseId !== null)
          this.#send({ type: "response.cancel", response_id: speech.responseId });
        speech.settle(new Error("speech cancelled"));
      };
      speech.settle = (err) => {
        if (!this.#byTag.delete(tag)) return;
        if (speech.responseId !== null) this.#byResponse.delete(speech.responseId);
        opts.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve();
      };
      this.#byTag.set(tag, speech);
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      this.#send({
        type: "response.create",
        event_id: `speech_${tag}`,
        response: {
          conversation: "none",
          metadata: { openvoice_speech: tag },
          output_modalities: ["audio"],
          instructions: SPEAK_VERBATIM,
          audio: { output: { voice, format: { type: "audio/pcm", rate: 24000 } } },
          tool_choice: "none",
          input: [{ type: "message", role: "user", content: [{ type: "input_text", text }] }],
        },
      });
    });
  }

  /** Takes the events of speech in flight; true when `e` was one (the session must not see it). */
  route(e: HandledEvent): boolean {
    if (this.#byTag.size === 0) return false;
    if (e.type === "response.created") {
      const tag = e.response.metadata?.openvoice_speech;
      const speech = tag === undefined ? undefined : this.#byTag.get(tag);
      if (!speech || !e.response.id) return false;
      speech.responseId = e.response.id;
      this.#byResponse.set(e.response.id, speech);
      return true;
    }
    if (e.type === "error") {
      const speech = this.#byTag.get(e.error.event_id?.replace(/^speech_/, "") ?? "");
      if (!speech) return false;
      this.#metrics.errors.inc({ code: `upstream_${e.error.code ?? e.error.type}` });
      speech.settle(new Error(`speech failed: ${e.error.message}`));
      return true;
    }
    const responseId =
      "response_id" in e ? e.response_id : e.type === "response.done" ? e.response.id : undefined;
    const speech = responseId === undefined ? undefined : this.#byResponse.get(responseId);
    if (!speech) return false;
    if (e.type === "response.output_audio.delta") speech.onAudio(Buffer.from(e.delta, "base64"));
    else if (e.type === "response.done") {
      const status = e.response.status;
      speech.settle(status === "completed" ? undefined : new Error(`speech ${status ?? "failed"}`));
    }
    return true;
  }

  /** Rejects every speech in flight (the session closed). */
  failAll(message: string): void {
    for (const speech of [...this.#byTag.values()]) speech.settle(new Error(message));
  }
}
