/**
 * Token usage as the fake reports it: audio at 10 input / 20 output tokens a second, text at about
 * four characters a token, and what every response re-reads of the conversation.
 */
import type { RealtimeResponseUsage, RealtimeSessionCreateRequest } from "openai/resources/realtime/realtime";

/** Realtime audio tokens: input 1 per 100 ms, output 1 per 50 ms (PCM16 24 kHz: 48 bytes a ms). */
export const BYTES_PER_INPUT_TOKEN = 4800;
export const BYTES_PER_OUTPUT_TOKEN = 2400;
/** Text tokens of `chars` characters (about four characters a token). */
export const textTokens = (chars: number): number => Math.ceil(chars / 4);

/** What a response said, for its usage: reply audio bytes sent and transcript characters. */
export interface UsageOfResponse {
  outAudioBytes?: number;
  outTextChars?: number;
}

/** The usage of one connection's responses. */
export class UsageMeter {
  /** Conversation tokens after the instructions (what every response re-reads). */
  readonly context = { text: 0, audio: 0 };
  /** The last in-band response's input. */
  lastInput = { text: 0, audio: 0 };

  /**
   * A `response.done` usage as the API reports it: the instructions, tools and the conversation so far as
   * input (audio at 10 tokens a second), the previous response's input cached once it reached 1,024
   * tokens, the reply as output (audio at 20 tokens a second), which later responses re-read.
   */
  of(session: RealtimeSessionCreateRequest, r: UsageOfResponse, outOfBand: boolean): RealtimeResponseUsage {
    const fixed = textTokens(
      (session.instructions ?? "").length + JSON.stringify(session.tools ?? []).length,
    );
    const input = outOfBand
      ? { text: fixed, audio: 0 }
      : { text: fixed + this.context.text, audio: this.context.audio };
    const previous = this.lastInput.text + this.lastInput.audio;
    const cached =
      outOfBand || previous < 1024
        ? { text: 0, audio: 0 }
        : {
            text: Math.min(input.text, this.lastInput.text),
            audio: Math.min(input.audio, this.lastInput.audio),
          };
    const out = {
      text: textTokens(r.outTextChars ?? 0),
      audio: Math.round((r.outAudioBytes ?? 0) / BYTES_PER_OUTPUT_TOKEN),
    };
    if (!outOfBand) {
      this.lastInput = input;
      this.context.text += out.text;
      this.context.audio += out.audio;
    }
    return {
      total_tokens: input.text + input.audio + out.text + out.audio,
      input_tokens: input.text + input.audio,
      output_tokens: out.text + out.audio,
      input_token_details: {
        text_tokens: input.text,
        audio_tokens: input.audio,
        image_tokens: 0,
        cached_tokens: cached.text + cached.audio,
        cached_tokens_details: { text_tokens: cached.text, audio_tokens: cached.audio, image_tokens: 0 },
      },
      output_token_details: { text_tokens: out.text, audio_tokens: out.audio },
    };
  }
}
