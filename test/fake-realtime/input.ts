/**
 * The input audio buffer of a fake upstream socket: appended audio, a server VAD in audio time
 * (RMS over 10 ms frames), commits and the input transcription that follows them.
 */
import type { RealtimeConversationItemUserMessage } from "openai/resources/realtime/realtime";
import { FRAME_SAMPLES, SAMPLE_RATE, rms } from "./audio.js";
import { FakeSocket, nextId, type ActiveResponse, type EventOf } from "./socket.js";
import { BYTES_PER_INPUT_TOKEN, textTokens } from "./usage.js";

export abstract class FakeInput extends FakeSocket {
  /** The in-band response in flight (a VAD turn start may cancel it). */
  protected active: ActiveResponse | null = null;
  /** Audio appended since the last commit (what the transcriber hears). */
  protected turnAudio: Buffer[] = [];
  // input buffer + VAD state (audio time)
  protected buffered = 0;
  protected audioMs = 0;
  protected speechMs = 0;
  protected silenceMs = 0;
  protected inSpeech = false;
  protected speechStartMs = 0;
  protected speechItemId = "";

  /** Answers a turn (a client `response.create`, or server VAD's end of turn when `eventId` is undefined). */
  protected abstract respondLater(eventId: string | undefined): void;

  protected onAppend(ev: EventOf<"input_audio_buffer.append">): void {
    const pcm = Buffer.from(ev.audio, "base64");
    if (pcm.length % 2 !== 0)
      return this.error(
        "invalid_request_error",
        "invalid_audio",
        "PCM16 audio must have an even byte count.",
        ev.event_id,
      );
    this.buffered += pcm.length;
    if (this.server.opts.keepAppends !== false) this.turnAudio.push(pcm);
    const td = this.session.audio?.input?.turn_detection;
    const vad = this.server.opts.vad ?? {};
    const threshold = vad.threshold ?? 0.02;
    const speechMs = vad.speechMs ?? 60;
    const silenceMs = vad.silenceMs ?? 300;
    for (let off = 0; off < pcm.length; off += FRAME_SAMPLES * 2) {
      const end = Math.min(pcm.length, off + FRAME_SAMPLES * 2);
      const frameMs = (end - off) / 2 / (SAMPLE_RATE / 1000);
      this.audioMs += frameMs;
      if (!td) continue;
      const loud = rms(pcm, off, end) >= threshold;
      if (!this.inSpeech) {
        this.speechMs = loud ? this.speechMs + frameMs : 0;
        if (this.speechMs >= speechMs) {
          this.inSpeech = true;
          this.silenceMs = 0;
          this.speechStartMs = Math.max(0, this.audioMs - this.speechMs);
          this.speechItemId = nextId("item");
          this.send({
            type: "input_audio_buffer.speech_started",
            event_id: nextId("event"),
            audio_start_ms: Math.round(this.speechStartMs),
            item_id: this.speechItemId,
          });
          if (this.active && td.interrupt_response !== false)
            this.active.finish("cancelled", "turn_detected");
        }
      } else {
        this.silenceMs = loud ? 0 : this.silenceMs + frameMs;
        if (this.silenceMs >= silenceMs) {
          this.inSpeech = false;
          this.speechMs = 0;
          this.send({
            type: "input_audio_buffer.speech_stopped",
            event_id: nextId("event"),
            audio_end_ms: Math.round(this.audioMs),
            item_id: this.speechItemId,
          });
          this.commit(this.speechItemId);
          if (td.create_response !== false) this.respondLater(undefined);
        }
      }
    }
  }

  protected commit(itemId = nextId("item")): void {
    this.buffered = 0;
    const opts = this.server.opts;
    const heard = Buffer.concat(this.turnAudio);
    this.turnAudio = [];
    this.usage.context.audio += Math.round(heard.length / BYTES_PER_INPUT_TOKEN);
    const transcript = opts.transcribe?.(heard) ?? opts.userTranscript ?? "turn on the kitchen light";
    this.send({
      type: "input_audio_buffer.committed",
      event_id: nextId("event"),
      item_id: itemId,
      previous_item_id: this.lastItemId,
    });
    const item: RealtimeConversationItemUserMessage = {
      type: "message",
      role: "user",
      id: itemId,
      object: "realtime.item",
      status: "completed",
      content: [{ type: "input_audio" }],
    };
    const previous = this.lastItemId;
    this.send({
      type: "conversation.item.added",
      event_id: nextId("event"),
      item,
      previous_item_id: previous,
    });
    this.lastItemId = itemId;
    const itemDone = (text: string | null): void =>
      this.send({
        type: "conversation.item.done",
        event_id: nextId("event"),
        item: { ...item, content: [{ type: "input_audio", ...(text === null ? {} : { transcript: text }) }] },
        previous_item_id: previous,
      });
    const tr = opts.transcription ?? {};
    const transcribing = this.session.audio?.input?.transcription !== null;
    if (!transcribing) return itemDone(null);
    const order = tr.order ?? "after_item_done";
    if (order === "after_item_done") itemDone(null);
    this.later(tr.delayMs ?? opts.userTranscriptDelayMs ?? 5, () => {
      if (tr.fail) {
        this.send({
          type: "conversation.item.input_audio_transcription.failed",
          event_id: nextId("event"),
          item_id: itemId,
          content_index: 0,
          error: {
            type: "transcription_error",
            code: "audio_unintelligible",
            message: "Audio unintelligible.",
          },
        });
      } else {
        for (const word of transcript.split(/(?<= )/))
          this.send({
            type: "conversation.item.input_audio_transcription.delta",
            event_id: nextId("event"),
            item_id: itemId,
            content_index: 0,
            delta: word,
          });
        this.send({
          type: "conversation.item.input_audio_transcription.completed",
          event_id: nextId("event"),
          item_id: itemId,
          content_index: 0,
          transcript,
          // whisper-1 is billed by duration, the gpt-4o transcribe models by tokens.
          usage:
            this.session.audio?.input?.transcription?.model === "whisper-1"
              ? { type: "duration", seconds: Math.max(1, Math.round(heard.length / 48_000)) }
              : {
                  type: "tokens",
                  input_tokens: Math.round(heard.length / BYTES_PER_INPUT_TOKEN),
                  output_tokens: textTokens(transcript.length),
                  total_tokens:
                    Math.round(heard.length / BYTES_PER_INPUT_TOKEN) + textTokens(transcript.length),
                  input_token_details: {
                    audio_tokens: Math.round(heard.length / BYTES_PER_INPUT_TOKEN),
                    text_tokens: 0,
                  },
                },
        });
      }
      if (order === "before_item_done") itemDone(tr.fail ? null : transcript);
    });
  }
}
