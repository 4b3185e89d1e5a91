/**
 * What the three Wyoming programs remember of each other (pure: no I/O, no timers; the caller passes
 * the clock). Home Assistant calls speech-to-text, the conversation agent and text-to-speech on three
 * separate connections that carry nothing in common but text, so the programs correlate by text:
 * - an ASR turn's transcript → the conversation that heard it (kept 30 s, taken once by `handle`: the
 *   newest first, since Home Assistant calls the conversation agent right after the speech-to-text call
 *   that produced the text, and an older turn of the same words was answered elsewhere or not at all);
 * - a handled answer's text → the model's own audio of it (kept 60 s, read by `synthesize`).
 */

/** How long an ASR turn waits for its `handle` call. */
export const ASR_TURN_TTL_MS = 30_000;
/** How long a handled answer's audio waits for its `synthesize` call. */
export const ANSWER_TTL_MS = 60_000;

/** The form texts are compared in: whitespace runs collapsed to one space, ends trimmed. */
export function normaliseText(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

interface Entry<V> {
  readonly value: V;
  readonly at: number;
}

/**
 * Values by normalised text, each kept `ttlMs` after it was put. One text may hold several values
 * (the same words heard twice, e.g. by two satellites, or once answered locally by Home Assistant);
 * `take` hands out the newest first and consumes it.
 */
export class ExpiringTextIndex<V> {
  readonly #ttlMs: number;
  readonly #byText = new Map<string, Entry<V>[]>();

  constructor(ttlMs: number) {
    this.#ttlMs = ttlMs;
  }

  put(text: string, value: V, now: number): void {
    const key = normaliseText(text);
    const list = this.#byText.get(key);
    if (list) list.push({ value, at: now });
    else this.#byText.set(key, [{ value, at: now }]);
  }

  /** Removes and returns the newest live value for `text`. Expired values stay for `sweep`. */
  take(text: string, now: number): V | undefined {
    const key = normaliseText(text);
    const list = this.#byText.get(key);
    if (this.#newestLive(list, now) === undefined) return undefined;
    const entry = list!.pop()!;
    if (list!.length === 0) this.#byText.delete(key);
    return entry.value;
  }

  /** The newest live value for `text`, left in place. */
  newest(text: string, now: number): V | undefined {
    return this.#newestLive(this.#byText.get(normaliseText(text)), now)?.value;
  }

  /** Removes `value` wherever it is. */
  remove(value: V): void {
    for (const [key, list] of this.#byText) {
      const i = list.findIndex((e) => e.value === value);
      if (i < 0) continue;
      list.splice(i, 1);
      if (list.length === 0) this.#byText.delete(key);
    }
  }

  /** Drops and returns every value older than the time to live. */
  sweep(now: number): V[] {
    const expired: V[] = [];
    for (const [key, list] of this.#byText) {
      while (list.length > 0 && now - list[0]!.at >= this.#ttlMs) expired.push(list.shift()!.value);
      if (list.length === 0) this.#byText.delete(key);
    }
    return expired;
  }

  get size(): number {
    let n = 0;
    for (const list of this.#byText.values()) n += list.length;
    return n;
  }

  #newestLive(list: Entry<V>[] | undefined, now: number): Entry<V> | undefined {
    const entry = list?.at(-1);
    return entry !== undefined && now - entry.at < this.#ttlMs ? entry : undefined;
  }
}

/** How a kept recording ended: all of it, or cut short (what was kept can still be played). */
export type KeptAudioEnd = "complete" | "cut";

/**
 * The model's audio of one answer (PCM16 24 kHz mono), kept as it arrives. Readers that come while it
 * still arrives get what is there at once, then each new chunk, then the end.
 */
export class KeptAudio {
  readonly #chunks: Buffer[] = [];
  #end: KeptAudioEnd | null = null;
  readonly #readers = new Set<{ chunk: (pcm: Buffer) => void; end: (how: KeptAudioEnd) => void }>();

  append(pcm: Buffer): void {
    if (this.#end !== null || pcm.length === 0) return;
    this.#chunks.push(pcm);
    for (const r of this.#readers) r.chunk(pcm);
  }

  /** Ends the recording. Idempotent. */
  finish(how: KeptAudioEnd): void {
    if (this.#end !== null) return;
    this.#end = how;
    for (const r of this.#readers) r.end(how);
    this.#readers.clear();
  }

  get ended(): KeptAudioEnd | null {
    return this.#end;
  }

  get bytes(): number {
    return this.#chunks.reduce((n, c) => n + c.length, 0);
  }

  /**
   * Replays the chunks so far synchronously, then follows the recording until it ends. Returns a
   * function that stops following (no `end` after it).
   */
  read(chunk: (pcm: Buffer) => void, end: (how: KeptAudioEnd) => void): () => void {
    for (const c of this.#chunks) chunk(c);
    if (this.#end !== null) {
      end(this.#end);
      return () => undefined;
    }
    const reader = { chunk, end };
    this.#readers.add(reader);
    return () => this.#readers.delete(reader);
  }
}
