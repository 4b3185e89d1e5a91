/**
 * Where an ESPHome media player is in a reply stream, modelled from what the server sees: the device
 * fetches the stream as fast as it is written, and its paused decoder takes what has arrived by its first
 * pass out of the still-encoded buffer (DESIGN §11; `audio_decoder.cpp`: an MP3 decoder then stops after
 * one decoded frame, a WAV one fills its 24 KiB output). It starts playing once that buffer holds
 * `INITIAL_BUFFER_MS` of decoded audio (/8 for MP3) on top, or when the stream ends, and then plays in real
 * time. Pure: the caller feeds the served amount and the clock.
 */

import { MP3_SPEECH_BITRATE_KBPS } from "../audio/mp3.js";
import type { ReplyFormat } from "./reply-stream.js";

/** The firmware's `INITIAL_BUFFER_MS` (`audio_pipeline.cpp`). */
const INITIAL_BUFFER_MS = 1000;
/** The decoder's input and output transfer buffers (`audio_pipeline.cpp`: `DEFAULT_TRANSFER_BUFFER_SIZE`), bytes. */
const TRANSFER_BUFFER_BYTES = 24 * 1024;
/** 24 kHz, 16-bit, mono. */
const PCM_BYTES_PER_MS = 48;
/** One MPEG-2 layer III frame at 24 kHz: 576 samples. */
const MP3_FRAME_MS = 24;

/** The device's start rule in stream time (ms of reply audio). */
export interface StartRule {
  /** What must arrive after the decoder's first fill: `INITIAL_BUFFER_MS` of decoded bytes (/8 for MP3). */
  readonly ringMs: number;
  /** What the paused decoder holds out of that count: its first fill, clamped to [min, max]. */
  readonly heldMinMs: number;
  readonly heldMaxMs: number;
}

/**
 * The start rule of a 24 kHz mono reply. WAV: 1 s in the ring, and the decoder fills its 24 KiB output
 * (plus up to 24 KiB of input when the audio came in a burst). MP3: 1/8 of a second's decoded bytes in
 * encoded bytes, and the decoder holds its first fill (at least one frame, at most its 24 KiB input).
 */
export function startRule(format: ReplyFormat, mp3BitrateKbps = MP3_SPEECH_BITRATE_KBPS): StartRule {
  if (format === "wav")
    return {
      ringMs: INITIAL_BUFFER_MS,
      heldMinMs: TRANSFER_BUFFER_BYTES / PCM_BYTES_PER_MS,
      heldMaxMs: (2 * TRANSFER_BUFFER_BYTES) / PCM_BYTES_PER_MS,
    };
  const encodedBytesPerMs = mp3BitrateKbps / 8;
  return {
    ringMs: (INITIAL_BUFFER_MS * PCM_BYTES_PER_MS) / 8 / encodedBytesPerMs,
    heldMinMs: MP3_FRAME_MS,
    heldMaxMs: TRANSFER_BUFFER_BYTES / encodedBytesPerMs,
  };
}

/** The least reply audio (ms) the device receives before its first sound: audio that arrives at once. */
export function startRuleMs(format: ReplyFormat, mp3BitrateKbps = MP3_SPEECH_BITRATE_KBPS): number {
  const r = startRule(format, mp3BitrateKbps);
  return r.ringMs + r.heldMinMs;
}

/** A stretch of the stream that belongs to one upstream item (null: keep-alive silence). */
interface Segment {
  itemId: string | null;
  startMs: number;
  ms: number;
}

export class DevicePlayhead {
  readonly #rule: StartRule;
  /** What the decoder's first fill took (ms), once the device has taken anything. */
  #heldMs: number | null = null;
  readonly #segments: Segment[] = [];
  #writtenMs = 0;
  #ended = false;
  /** Clock time the device started playing, once the start rule is met. */
  #playStart: number | null = null;

  /** `rule`: the device's start rule, or a fixed amount of audio (ms) before the first sound. */
  constructor(rule: StartRule | number) {
    this.#rule = typeof rule === "number" ? { ringMs: rule, heldMinMs: 0, heldMaxMs: 0 } : rule;
  }

  get writtenMs(): number {
    return this.#writtenMs;
  }

  /** Clock time of the first sound (estimated), or null before it. */
  get playStart(): number | null {
    return this.#playStart;
  }

  /** `ms` of audio of `itemId` (or silence) was written to the stream, after everything before. */
  wrote(itemId: string | null, ms: number): void {
    if (ms <= 0) return;
    const last = this.#segments.at(-1);
    if (last !== undefined && last.itemId === itemId) last.ms += ms;
    else this.#segments.push({ itemId, startMs: this.#writtenMs, ms });
    this.#writtenMs += ms;
  }

  /** The stream ended: the device plays what it has even below its start rule. */
  end(): void {
    this.#ended = true;
  }

  /**
   * The device has taken `servedMs` of the stream by clock time `at`. The first sample that finds anything
   * taken stands for the decoder's first fill.
   */
  served(servedMs: number, at: number): void {
    if (this.#playStart !== null || servedMs <= 0) return;
    const r = this.#rule;
    this.#heldMs ??= Math.min(r.heldMaxMs, Math.max(r.heldMinMs, servedMs));
    const startMs = this.#heldMs + r.ringMs;
    const need = this.#ended ? Math.min(startMs, this.#writtenMs) : startMs;
    if (servedMs >= need) this.#playStart = at;
  }

  /** Milliseconds of the stream played by clock time `at` (never more than was written). */
  playedMs(at: number): number {
    if (this.#playStart === null) return 0;
    return Math.max(0, Math.min(this.#writtenMs, at - this.#playStart));
  }

  /**
   * What to truncate when playback stopped at clock time `at`: the item under the play head and how far
   * into it the listener heard, and the items after it (heard not at all).
   */
  stoppedAt(at: number): { head: { itemId: string; audioEndMs: number } | null; unheard: string[] } {
    const pos = this.playedMs(at);
    let head: { itemId: string; audioEndMs: number } | null = null;
    const unheard: string[] = [];
    const itemStart = new Map<string, number>();
    for (const s of this.#segments) {
      if (s.itemId === null) continue;
      if (!itemStart.has(s.itemId)) itemStart.set(s.itemId, s.startMs);
      if (pos >= s.startMs + s.ms) continue;
      if (pos >= s.startMs && head === null)
        head = { itemId: s.itemId, audioEndMs: Math.round(pos - itemStart.get(s.itemId)!) };
      else if (s.itemId !== head?.itemId && !unheard.includes(s.itemId)) unheard.push(s.itemId);
    }
    return { head, unheard };
  }

  /** Whether playback ended before everything written was played (a stop, by clock time `at`). */
  cutShort(at: number, marginMs = 250): boolean {
    return this.playedMs(at) + marginMs < this.#writtenMs;
  }
}
