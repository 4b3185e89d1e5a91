/**
 * The reply-audio pacing clock: turns audio that arrives in bursts (the Realtime API sends a reply
 * much faster than real time) into fixed-duration frames sent at real time, keeping about
 * `leadMs` of audio buffered on the device so network jitter does not starve its speaker.
 * It also keeps the estimate of how much the listener has actually heard, which barge-in needs
 * for `conversation.item.truncate`.
 */
import { EventEmitter } from "node:events";

/** Time source and ticker; inject a manual one in tests. */
export interface PacerClock {
  /** Monotonic milliseconds. */
  now(): number;
  /** Calls `tick` every `ms` until the returned function is called. Must not keep the process alive. */
  every(ms: number, tick: () => void): () => void;
}

/** `performance.now()` and an unref'd `setInterval`. */
export const systemClock: PacerClock = {
  now: () => performance.now(),
  every(ms, tick) {
    const timer = setInterval(tick, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
};

export interface PlaybackPacerOptions {
  /** Sample rate of the PCM16 pushed and sent (the satellite's output rate). */
  sampleRate: number;
  /** Frame duration, 20–40 ms (default 20). Every frame but a response's last has exactly this length. */
  frameMs?: number;
  /** Audio kept buffered on the device ahead of its play head, at least one frame (default 200 ms). */
  leadMs?: number;
  /** Most audio held in the queue (default 60 s); see {@link PlaybackPacer.push} for what happens beyond. */
  maxQueueMs?: number;
  clock?: PacerClock;
}

/** Where the listener is, relative to the reply item at the play head. */
export interface PlaybackPosition {
  /** Item whose audio is at the play head; undefined when nothing has been sent since the last clear. */
  itemId: string | undefined;
  /** Milliseconds of that item the listener has heard: an estimate from the clock, never more than `sentMs`. */
  playedMs: number;
  /** Milliseconds of that item sent to the device so far. */
  sentMs: number;
}

export interface PlaybackPacerEvents {
  /** Everything queued has been sent (after `end()`, including the short last frame). */
  drain: [];
}

/** Where an item's audio starts, in samples since the stream began. */
interface ItemSpan {
  itemId: string;
  start: number;
}

type Playback =
  | { status: "idle" }
  /** `origin`: clock time at which the device's play head was at stream sample 0. */
  | { status: "playing"; origin: number };

const DEFAULT_FRAME_MS = 20;
const DEFAULT_LEAD_MS = 200;
const DEFAULT_MAX_QUEUE_MS = 60_000;
const INITIAL_QUEUE_MS = 1_000;

/**
 * One per satellite connection. `send` receives each frame as a fresh Buffer (PCM16 LE) that it may
 * keep; it is called synchronously from `push`/`end` (the lead goes out at once) and then from the
 * clock's ticks; it must not throw, and may call `clear()`/`close()` (no frame follows). A frame may go out when, once sent, the device would hold at
 * most `leadMs` (± half a frame) of unplayed audio; the device is assumed to start playing on receipt.
 */
export class PlaybackPacer extends EventEmitter<PlaybackPacerEvents> {
  readonly sampleRate: number;
  readonly frameMs: number;
  readonly leadMs: number;
  readonly maxQueueMs: number;

  readonly #send: (frame: Buffer) => void;
  readonly #clock: PacerClock;
  readonly #frameSamples: number;
  readonly #maxQueueSamples: number;
  readonly #initialRingSamples: number;

  #ring: Int16Array;
  #head = 0;
  #queued = 0;
  /** Samples accepted since the stream began (sent + queued). */
  #pushed = 0;
  /** Samples sent since the stream began. */
  #sent = 0;
  #ended = false;
  #closed = false;
  #playback: Playback = { status: "idle" };
  #spans: ItemSpan[] = [];
  #stopTicks: (() => void) | undefined;

  /** @throws RangeError for a frame outside 20–40 ms, a lead shorter than a frame, or a non-positive rate/cap. */
  constructor(send: (frame: Buffer) => void, options: PlaybackPacerOptions) {
    super();
    const frameMs = options.frameMs ?? DEFAULT_FRAME_MS;
    const leadMs = options.leadMs ?? DEFAULT_LEAD_MS;
    const maxQueueMs = options.maxQueueMs ?? DEFAULT_MAX_QUEUE_MS;
    const frameSamples = (options.sampleRate * frameMs) / 1000;
    if (!(options.sampleRate > 0) || !Number.isInteger(options.sampleRate)) {
      throw new RangeError(`sample rate must be a positive integer, got ${options.sampleRate}`);
    }
    if (!(frameMs >= 20 && frameMs <= 40) || !Number.isInteger(frameSamples)) {
      throw new RangeError(`frameMs must be 20–40 and a whole number of samples, got ${frameMs}`);
    }
    if (!(leadMs >= frameMs))
      throw new RangeError(`leadMs must be at least one frame (${frameMs} ms), got ${leadMs}`);
    if (!(maxQueueMs >= frameMs))
      throw new RangeError(`maxQueueMs must be at least one frame, got ${maxQueueMs}`);
    this.sampleRate = options.sampleRate;
    this.frameMs = frameMs;
    this.leadMs = leadMs;
    this.maxQueueMs = maxQueueMs;
    this.#send = send;
    this.#clock = options.clock ?? systemClock;
    this.#frameSamples = frameSamples;
    this.#maxQueueSamples = Math.floor((options.sampleRate * maxQueueMs) / 1000);
    this.#initialRingSamples = Math.min(
      this.#maxQueueSamples,
      (options.sampleRate * INITIAL_QUEUE_MS) / 1000,
    );
    this.#ring = new Int16Array(this.#initialRingSamples);
  }

  /** Milliseconds of audio waiting to be sent. */
  get queuedMs(): number {
    return this.#toMs(this.#queued);
  }

  /**
   * What the pacer keeps per connection, for diagnostics: reply items whose position is still known
   * and the queue's capacity. Neither grows with the number of replies: items behind the play head
   * are forgotten as new ones arrive, and a queue grown for a long reply shrinks back once drained.
   */
  bookkeeping(): { items: number; ringMs: number } {
    return { items: this.#spans.length, ringMs: this.#toMs(this.#ring.length) };
  }

  /** True while audio is queued or the device is estimated to be still playing what it was sent. */
  get active(): boolean {
    return this.#queued > 0 || this.#unplayed() > 0;
  }

  /**
   * Queues reply audio of item `itemId` (copied; the caller may reuse `pcm`). Audio beyond
   * `maxQueueMs` of queue is dropped, newest first: what fits is kept, and the number of samples
   * dropped is returned (0 normally). Ignored after `close()`.
   */
  push(pcm: Int16Array, itemId = ""): number {
    if (this.#closed) return pcm.length;
    const accepted = Math.min(pcm.length, this.#maxQueueSamples - this.#queued);
    if (accepted <= 0) return pcm.length;
    if (this.#playback.status === "idle") this.#playback = { status: "playing", origin: this.#clock.now() };
    const last = this.#spans[this.#spans.length - 1];
    if (last?.itemId !== itemId) {
      this.#forgetPlayedSpans(this.#sent - this.#unplayed());
      this.#spans.push({ itemId, start: this.#pushed });
    }
    this.#enqueue(pcm, accepted);
    this.#pushed += accepted;
    this.#ended = false;
    this.#pump();
    return pcm.length - accepted;
  }

  /** The response has no more audio: the last partial frame goes out when due, then `drain`. */
  end(): void {
    if (this.#closed || this.#queued === 0) return;
    this.#ended = true;
    this.#pump();
  }

  /**
   * Barge-in: drops all queued audio at once and forgets the stream (the caller tells the device to
   * drop its buffer). Returns where the listener was, for `conversation.item.truncate`. No `drain`.
   */
  clear(): PlaybackPosition {
    const position = this.position();
    this.#stop();
    this.#head = 0;
    this.#queued = 0;
    this.#pushed = 0;
    this.#sent = 0;
    this.#ended = false;
    this.#spans = [];
    this.#playback = { status: "idle" };
    return position;
  }

  /** The current play-head estimate; see {@link PlaybackPosition}. */
  position(): PlaybackPosition {
    const played = this.#sent - this.#unplayed();
    this.#forgetPlayedSpans(played);
    const spans = this.#spans;
    const span = spans[0];
    if (!span) return { itemId: undefined, playedMs: 0, sentMs: 0 };
    const next = spans[1];
    const sentEnd = next ? Math.min(next.start, this.#sent) : this.#sent;
    return {
      itemId: span.itemId,
      playedMs: this.#toMs(Math.max(0, played - span.start)),
      sentMs: this.#toMs(Math.max(0, sentEnd - span.start)),
    };
  }

  /** Milliseconds of the current item heard so far (see {@link position}). */
  playedMs(): number {
    return this.position().playedMs;
  }

  /** Stops for good: drops the queue, stops the ticker; idempotent. */
  close(): void {
    this.clear();
    this.#closed = true;
  }

  /** Drops the spans wholly behind the play head `played` (they are never asked about again). */
  #forgetPlayedSpans(played: number): void {
    const spans = this.#spans;
    let i = 0;
    while (i + 1 < spans.length && spans[i + 1]!.start <= played && spans[i + 1]!.start < this.#sent) i++;
    if (i > 0) spans.splice(0, i);
  }

  /** Sends every frame that is due; keeps the ticker running only while a frame is waiting. */
  #pump(): void {
    if (this.#playback.status !== "playing") return;
    const now = this.#clock.now();
    if (now - this.#playback.origin > this.#toMs(this.#sent)) {
      // The device ran dry (audio came slower than real time): its play head restarts now.
      this.#playback = { status: "playing", origin: now - this.#toMs(this.#sent) };
    }
    const halfFrameMs = this.frameMs / 2;
    while (this.#queued > 0) {
      const length = this.#queued >= this.#frameSamples ? this.#frameSamples : this.#ended ? this.#queued : 0;
      if (length === 0) break;
      const bufferedAfter = this.#toMs(this.#unplayedAt(now) + length);
      if (bufferedAfter > this.leadMs + halfFrameMs) break;
      this.#send(this.#takeFrame(length));
      // `send` may have cleared or closed us.
      if (this.#playback.status !== "playing") return;
      if (this.#queued === 0) {
        this.#ended = false;
        this.#shrinkRing();
        this.#stop();
        this.emit("drain");
        return;
      }
    }
    const waiting = this.#queued >= this.#frameSamples || (this.#ended && this.#queued > 0);
    if (waiting && !this.#stopTicks) this.#stopTicks = this.#clock.every(this.frameMs, () => this.#pump());
    else if (!waiting) this.#stop();
  }

  #stop(): void {
    this.#stopTicks?.();
    this.#stopTicks = undefined;
  }

  /** A fresh Buffer (the consumer may keep it: a socket holds it until written), from Node's pool. */
  #takeFrame(length: number): Buffer {
    const bytes = Buffer.allocUnsafe(length * 2);
    const frame = new Int16Array(bytes.buffer, bytes.byteOffset, length);
    const ring = this.#ring;
    const first = Math.min(length, ring.length - this.#head);
    frame.set(ring.subarray(this.#head, this.#head + first));
    if (first < length) frame.set(ring.subarray(0, length - first), first);
    this.#head = (this.#head + length) % ring.length;
    this.#queued -= length;
    this.#sent += length;
    return bytes;
  }

  #enqueue(pcm: Int16Array, count: number): void {
    if (this.#queued + count > this.#ring.length) this.#grow(this.#queued + count);
    const ring = this.#ring;
    const tail = (this.#head + this.#queued) % ring.length;
    const first = Math.min(count, ring.length - tail);
    ring.set(pcm.subarray(0, first), tail);
    if (first < count) ring.set(pcm.subarray(first, count), 0);
    this.#queued += count;
  }

  /** With the queue empty, a ring grown for a long reply goes back to its initial size. */
  #shrinkRing(): void {
    if (this.#ring.length <= this.#initialRingSamples) return;
    this.#ring = new Int16Array(this.#initialRingSamples);
    this.#head = 0;
  }

  #grow(needed: number): void {
    const size = Math.min(this.#maxQueueSamples, Math.max(needed, this.#ring.length * 2));
    const grown = new Int16Array(size);
    const ring = this.#ring;
    const first = Math.min(this.#queued, ring.length - this.#head);
    grown.set(ring.subarray(this.#head, this.#head + first));
    if (first < this.#queued) grown.set(ring.subarray(0, this.#queued - first), first);
    this.#ring = grown;
    this.#head = 0;
  }

  /** Samples sent but not yet played, by the clock. */
  #unplayed(): number {
    return this.#unplayedAt(this.#clock.now());
  }

  #unplayedAt(now: number): number {
    if (this.#playback.status !== "playing") return 0;
    const played = ((now - this.#playback.origin) * this.sampleRate) / 1000;
    return Math.max(0, this.#sent - played);
  }

  #toMs(samples: number): number {
    return (samples * 1000) / this.sampleRate;
  }
}
