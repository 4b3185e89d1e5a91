/**
 * Where an ESPHome media player is in a reply stream, modelled from what the server sees: the device
 * fetches the stream as fast as it is written, starts playing once its still-encoded buffer holds what
 * its start rule needs (DESIGN §11: `INITIAL_BUFFER_MS` of decoded audio, /8 for MP3, plus what the
 * paused decoder holds), or when the stream ends, and then plays in real time. Pure: the caller feeds
 * the served amount and the clock.
 */

import { MP3_SPEECH_BITRATE_KBPS } from "../audio/mp3.js";
import type { ReplyFormat } from "./reply-stream.js";

/** The firmware's `INITIAL_BUFFER_MS` (`audio_pipeline.cpp`). */
const INITIAL_BUFFER_MS = 1000;
/** The paused decoder's transfer buffer (`audio_decoder.cpp`), bytes. */
const DECODER_BUFFER_BYTES = 24 * 1024;
/** One MPEG-2 layer III frame at 24 kHz: 576 samples. */
const MP3_FRAME_MS = 24;

/**
 * Milliseconds of reply audio (24 kHz mono PCM16) the device must have received before its first sound:
 * WAV counts every byte and its decoder holds 24 KiB more; MP3 counts 1/8 of the decoded size in encoded
 * bytes plus one frame.
 */
export function startRuleMs(format: ReplyFormat, mp3BitrateKbps = MP3_SPEECH_BITRATE_KBPS): number {
  const pcmBytesPerMs = 48; // 24 kHz, 16-bit, mono
  if (format === "wav") return INITIAL_BUFFER_MS + DECODER_BUFFER_BYTES / pcmBytesPerMs;
  const encodedBytes = (INITIAL_BUFFER_MS * pcmBytesPerMs) / 8;
  return encodedBytes / (mp3BitrateKbps / 8) + MP3_FRAME_MS;
}

/** A stretch of the stream that belongs to one upstream item (null: keep-alive silence). */
interface Segment {
  itemId: string | null;
  startMs: number;
  ms: number;
}

export class DevicePlayhead {
  readonly #startMs: number;
  readonly #segments: Segment[] = [];
  #writtenMs = 0;
  #ended = false;
  /** Clock time the device started playing, once the start rule is met. */
  #playStart: number | null = null;

  constructor(startMs: number) {
    this.#startMs = startMs;
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

  /** The device has taken `servedMs` of the stream by clock time `at`. */
  served(servedMs: number, at: number): void {
    if (this.#playStart !== null) return;
    const need = this.#ended ? Math.min(this.#startMs, this.#writtenMs) : this.#startMs;
    if (servedMs >= need && servedMs > 0) this.#playStart = at;
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
