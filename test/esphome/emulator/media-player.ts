/**
 * The speaker media player's announcement pipeline as the firmware runs it
 * (`speaker/media_player/audio_pipeline.cpp`, `audio/audio_decoder.cpp`, `audio/audio_reader.cpp`):
 * - the reader fetches the url over HTTP; the file type comes from the exact Content-Type
 *   (`audio/wav`; `audio/mpeg`, `audio/mp3`, `mp3`; `audio/flac`, `audio/x-flac`), else from the url's
 *   ending, query string included; 5 s without data fails the reader, which drops what it buffered
 *   (`CONNECTION_TIMEOUT_MS`; one firmware version seen waits 6 × that before failing on a read that
 *   times out: `readTimeoutMs` plays it);
 * - the decoder starts paused and begins output once the raw ring buffer holds
 *   `ms_to_bytes(INITIAL_BUFFER_MS = 1000)` of the decoded format (÷ 8 for MP3, capped at ¾ of the
 *   buffer) or the reader has finished. The paused decoder keeps working (`AudioDecoder::decode`: only
 *   the output to the speaker is paused) while its output buffer has room for one more step (1 KiB for
 *   WAV, one 1152-sample stereo frame, 4608 bytes, for MP3): each pass refills its 24 KiB input transfer
 *   buffer from the ring, then decodes. What it took no longer counts as buffered: see `PausedDecoder`.
 *   The current firmware shrinks an MP3 decoder's output buffer to that one frame, so it stops after the
 *   first frame; the 2024 one kept 24 KiB and decoded ~18 frames first (`DecoderGeneration`);
 * - playback then runs at real time, stalling when the data runs out.
 * FLAC is recognised but not decoded here (the pipeline fails, as a decoder error would).
 */
import { EventEmitter } from "node:events";
import http from "node:http";

export const INITIAL_BUFFER_MS = 1000;
export const READ_TIMEOUT_MS = 5000;
export const TRANSFER_BUFFER_BYTES = 24 * 1024;
export const PIPELINE_BUFFER_BYTES = 1_000_000;
const TICK_MS = 10;
/** The decoder's paused wait (`READ_WRITE_TIMEOUT_MS`): one decode-task turn. */
export const DECODER_PASS_MS = 20;

export type FileType = "wav" | "mp3" | "flac";

/**
 * Which `audio_decoder.cpp` the paused decoder follows. `current`: `AudioDecoder::start` reallocates an
 * MP3 decoder's output transfer buffer to one frame (4608 bytes), so a paused MP3 decoder holds its first
 * fill and one decoded frame. `2024` (commit 64758d8): every output buffer is 24 KiB, so a paused MP3
 * decoder keeps refilling and decodes ~18 frames, and its passes run two per 60 ms. Later firmware
 * (microMP3, esphome#16236, #17106, #17279) sizes that buffer to the stream's own frame or keeps the
 * 4608-byte worst case: one decoded frame either way, as `current` models it.
 */
export type DecoderGeneration = "2024" | "current";

/** The reader's file-type rule: the whole Content-Type compared without case, else the lower-cased url's ending. */
export function fileTypeOf(contentType: string | undefined, url: string): FileType | null {
  switch (contentType?.toLowerCase()) {
    case "audio/wav":
      return "wav";
    case "audio/mpeg":
    case "audio/mp3":
    case "mp3":
      return "mp3";
    case "audio/flac":
    case "audio/x-flac":
      return "flac";
  }
  const lower = url.toLowerCase();
  if (lower.endsWith(".wav")) return "wav";
  if (lower.endsWith(".mp3")) return "mp3";
  if (lower.endsWith(".flac")) return "flac";
  return null;
}

interface StreamInfo {
  /** Bytes per second of the decoded format (rate × channels × 2). */
  bytesPerSecond: number;
  /** Where the audio data starts (WAV: after the header; MP3: the first frame). */
  dataStart: number;
  /** ms of audio decodable from what has arrived. */
  decodableMs: number;
  /** Decoded PCM when WAV. */
  pcm: Buffer | null;
}

/** WAV: RIFF/WAVE with `fmt ` (PCM, 16-bit, 1–2 channels) and `data`. null until the header is in. */
export function wavInfo(b: Buffer): StreamInfo | { error: string } | null {
  if (b.length < 12) return null;
  if (b.toString("ascii", 0, 4) !== "RIFF" || b.toString("ascii", 8, 12) !== "WAVE")
    return { error: "not a WAV file" };
  let at = 12;
  let rate = 0;
  let channels = 0;
  let bits = 0;
  while (at + 8 <= b.length) {
    const id = b.toString("ascii", at, at + 4);
    const size = b.readUInt32LE(at + 4);
    if (id === "data") {
      if (!rate) return { error: "WAV data before fmt" };
      if (bits !== 16) return { error: `incompatible bits per sample (${bits})` };
      if (channels < 1 || channels > 2) return { error: `incompatible channels (${channels})` };
      const header = at + 8;
      const pcmBytes = b.length - header;
      const bytesPerSecond = rate * channels * 2;
      return {
        bytesPerSecond,
        dataStart: header,
        decodableMs: (pcmBytes / bytesPerSecond) * 1000,
        pcm: b.subarray(header),
      };
    }
    if (at + 8 + size > b.length) return null;
    if (id === "fmt ") {
      channels = b.readUInt16LE(at + 10);
      rate = b.readUInt32LE(at + 12);
      bits = b.readUInt16LE(at + 22);
    }
    at += 8 + size + (size & 1);
  }
  return null;
}

const MP3_BITRATES = {
  v1: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  v2: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
};
const MP3_RATES: Record<number, number[]> = {
  3: [44100, 48000, 32000],
  2: [22050, 24000, 16000],
  0: [11025, 12000, 8000],
};

/** One MP3 frame: where it starts, its size, and the decoded bytes it gives. */
export interface Mp3Frame {
  at: number;
  size: number;
  pcmBytes: number;
}

/** MP3 (Layer III) frames parsed from their headers; an ID3v2 tag first is skipped. null until one frame is complete. */
export function mp3Frames(
  b: Buffer,
): { frames: Mp3Frame[]; rate: number; channels: number } | { error: string } | null {
  let at = 0;
  if (b.length >= 10 && b.toString("ascii", 0, 3) === "ID3") {
    const size = ((b[6]! & 0x7f) << 21) | ((b[7]! & 0x7f) << 14) | ((b[8]! & 0x7f) << 7) | (b[9]! & 0x7f);
    at = 10 + size;
  }
  const frames: Mp3Frame[] = [];
  let rate = 0;
  let channels = 0;
  while (at + 4 <= b.length) {
    const h = b.readUInt32BE(at);
    if (h >>> 21 !== 0x7ff) {
      if (frames.length === 0) return { error: "no MP3 frame sync" };
      break;
    }
    const version = (h >>> 19) & 3;
    const layer = (h >>> 17) & 3;
    const brIndex = (h >>> 12) & 15;
    const srIndex = (h >>> 10) & 3;
    const padding = (h >>> 9) & 1;
    const frameRate = MP3_RATES[version]?.[srIndex];
    const kbps = (version === 3 ? MP3_BITRATES.v1 : MP3_BITRATES.v2)[brIndex];
    if (layer !== 1 || !frameRate || !kbps) return { error: "unsupported MP3 frame" };
    const size = Math.floor(((version === 3 ? 144000 : 72000) * kbps) / frameRate) + padding;
    if (at + size > b.length) break;
    rate = frameRate;
    channels = ((h >>> 6) & 3) === 3 ? 1 : 2;
    frames.push({ at, size, pcmBytes: (version === 3 ? 1152 : 576) * channels * 2 });
    at += size;
  }
  return frames.length ? { frames, rate, channels } : null;
}

/** MP3 stream info for playback: every complete frame is decodable. */
export function mp3Info(b: Buffer): StreamInfo | { error: string } | null {
  const parsed = mp3Frames(b);
  if (!parsed || "error" in parsed) return parsed;
  const bytesPerSecond = parsed.rate * parsed.channels * 2;
  const pcm = parsed.frames.reduce((n, f) => n + f.pcmBytes, 0);
  return {
    bytesPerSecond,
    dataStart: parsed.frames[0]!.at,
    decodableMs: (pcm / bytesPerSecond) * 1000,
    pcm: null,
  };
}

/**
 * The decode task before playback starts (`audio_pipeline.cpp` `decode_task`, `audio_decoder.cpp`):
 * each `pass()` is one decoder pass while the output is paused: refill the input transfer buffer with
 * what the ring has (up to 24 KiB), then one step: the WAV header, a WAV copy into the output, or one
 * MP3 frame. Passes take nothing once the output buffer has less room than a step needs. What the
 * start rule sees is `ringBytes`; `turn()` is one decode-task turn with the rule. Positions are offsets
 * into the stream received so far. Pure: the caller drives it with the stream and the turns.
 */
export class PausedDecoder {
  /** Stream bytes moved from the ring into the input buffer. */
  private pulled = 0;
  /** Stream offset of the first input byte not yet decoded. */
  private next = 0;
  private turns = 0;
  /** Decoded bytes waiting in the output buffer. */
  output = 0;
  bytesPerSecond = 0;
  error: string | null = null;
  /** Free output space a decoding step needs (`free_buffer_required_`). */
  private readonly required: number;
  /** The output transfer buffer's size. */
  readonly outputCapacity: number;

  constructor(
    private readonly type: "wav" | "mp3",
    readonly generation: DecoderGeneration = "current",
  ) {
    this.required = type === "wav" ? 1024 : 1152 * 2 * 2;
    this.outputCapacity = type === "mp3" && generation === "current" ? this.required : TRANSFER_BUFFER_BYTES;
  }

  get hasStreamInfo(): boolean {
    return this.bytesPerSecond > 0;
  }

  /** Bytes the decoder took out of the ring (its input buffer and what it decoded). */
  get held(): number {
    return this.pulled;
  }

  /** Bytes of `received` still in the ring: what the start rule counts. */
  ringBytes(received: number): number {
    return received - this.pulled;
  }

  /** What the ring must hold before the first sound (`initial_bytes_to_buffer`); 0 before the stream info. */
  get initialBytes(): number {
    const initial = Math.min(
      this.bytesPerSecond * (INITIAL_BUFFER_MS / 1000),
      (PIPELINE_BUFFER_BYTES * 3) / 4,
    );
    return this.type === "mp3" ? Math.floor(initial / 8) : initial;
  }

  /**
   * One decode-task turn (every {@link DECODER_PASS_MS}) over the stream received so far: a decoder pass,
   * then the start rule. True once playback starts: the stream info is known and the ring holds
   * `initialBytes`, or the reader has finished.
   */
  turn(stream: Buffer, readerDone: boolean): boolean {
    this.turns++;
    if (this.type === "wav" || this.generation === "current" || this.turns % 3 !== 0) this.pass(stream);
    if (this.error || (!this.hasStreamInfo && !readerDone)) return false;
    return readerDone || this.ringBytes(stream.length) >= this.initialBytes;
  }

  pass(stream: Buffer): void {
    if (this.error || this.outputCapacity - this.output < this.required) return;
    this.pulled += Math.min(TRANSFER_BUFFER_BYTES - (this.pulled - this.next), stream.length - this.pulled);
    const input = stream.subarray(0, this.pulled);
    if (this.type === "wav") {
      if (!this.hasStreamInfo) {
        const info = wavInfo(input);
        if (info && "error" in info) this.error = info.error;
        else if (info) {
          this.next = info.dataStart;
          this.bytesPerSecond = info.bytesPerSecond;
        }
        return;
      }
      const n = Math.min(this.pulled - this.next, this.outputCapacity - this.output);
      this.next += n;
      this.output += n;
      return;
    }
    const parsed = mp3Frames(input);
    if (parsed && "error" in parsed) {
      this.error = parsed.error;
      return;
    }
    const frame = parsed?.frames.find((f) => f.at >= this.next);
    if (!frame || !parsed) return;
    this.next = frame.at + frame.size;
    this.output += frame.pcmBytes;
    if (!this.hasStreamInfo) this.bytesPerSecond = parsed.rate * parsed.channels * 2;
  }
}

export interface PlaybackResult {
  url: string;
  contentType: string | null;
  fileType: FileType | null;
  /** performance.now() of the first sound, null if nothing played. */
  firstSoundAt: number | null;
  playedMs: number;
  /** Everything the reader received. */
  bytes: Buffer;
  /** Decoded PCM that was played (WAV only). */
  pcm: Buffer | null;
  /** Why the pipeline failed ("read timeout", "HTTP 404", ...), null when it played to the end or was stopped. */
  error: string | null;
  stopped: boolean;
}

export interface MediaPlayerEvents {
  /** The announcement pipeline runs (the media player is ANNOUNCING) or has ended (IDLE). */
  state: ["announcing" | "idle"];
  /** The first sound of a stream, with how many bytes of it had arrived by then. */
  sound: [{ url: string; at: number; receivedBytes: number; heldByDecoder: number; fileType: FileType }];
}

/** One announcement at a time; a new `play` stops the current one. */
export class EmulatedMediaPlayer extends EventEmitter<MediaPlayerEvents> {
  private current: { stop: () => void } | null = null;

  constructor(
    private readonly readTimeoutMs = READ_TIMEOUT_MS,
    private readonly generation: DecoderGeneration = "current",
  ) {
    super();
  }

  get announcing(): boolean {
    return this.current !== null;
  }

  /** The stop command: closes the HTTP stream and ends the pipeline. */
  stop(): void {
    this.current?.stop();
  }

  /** Plays `urls` in turn (a pre-announcement, then the media); resolves with the last one's result. */
  async playAll(urls: string[]): Promise<PlaybackResult> {
    let last: PlaybackResult | null = null;
    this.emit("state", "announcing");
    for (const url of urls) {
      last = await this.playOne(url);
      if (last.stopped || last.error) break;
    }
    this.emit("state", "idle");
    return last!;
  }

  private playOne(url: string): Promise<PlaybackResult> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let received = Buffer.alloc(0);
      let contentType: string | null = null;
      let fileType: FileType | null = null;
      let info: StreamInfo | null = null;
      let readerDone = false;
      let firstSoundAt: number | null = null;
      let playedMs = 0;
      let lastTick = 0;
      let settled = false;
      let readTimer: NodeJS.Timeout | null = null;
      let ticker: NodeJS.Timeout | null = null;

      const finish = (error: string | null, stopped = false): void => {
        if (settled) return;
        settled = true;
        if (readTimer) clearTimeout(readTimer);
        if (ticker) clearInterval(ticker);
        if (decodeTask) clearInterval(decodeTask);
        req.destroy();
        this.current = null;
        const pcm = info?.pcm
          ? info.pcm.subarray(0, Math.round((playedMs / 1000) * info.bytesPerSecond) & ~1)
          : null;
        resolve({ url, contentType, fileType, firstSoundAt, playedMs, bytes: received, pcm, error, stopped });
      };
      const armReadTimeout = (): void => {
        if (readTimer) clearTimeout(readTimer);
        readTimer = setTimeout(() => finish("read timeout"), this.readTimeoutMs);
      };
      let decoder: PausedDecoder | null = null;
      let decodeTask: NodeJS.Timeout | null = null;
      const update = (): void => {
        if (!fileType || fileType === "flac") return;
        const parsed = fileType === "wav" ? wavInfo(received) : mp3Info(received);
        if (parsed && "error" in parsed) return finish(parsed.error);
        info = parsed;
      };
      const decodeTurn = (): void => {
        if (!decoder || firstSoundAt !== null || settled) return;
        const start = decoder.turn(received, readerDone);
        if (decoder.error) return finish(decoder.error);
        if (!info || !start) return;
        firstSoundAt = performance.now();
        lastTick = firstSoundAt;
        if (decodeTask) clearInterval(decodeTask);
        this.emit("sound", {
          url,
          at: firstSoundAt,
          receivedBytes: received.length,
          heldByDecoder: decoder.held,
          fileType: fileType as FileType,
        });
        ticker = setInterval(tick, TICK_MS);
      };
      const tick = (): void => {
        const now = performance.now();
        const available = info?.decodableMs ?? 0;
        playedMs = Math.min(available, playedMs + (now - lastTick));
        lastTick = now;
        if (readerDone && playedMs >= available) finish(null);
      };

      const req = http.get(url, (res) => {
        contentType = res.headers["content-type"] ?? null;
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 308) return finish(`HTTP ${status}`);
        fileType = fileTypeOf(res.headers["content-type"], url);
        if (!fileType) return finish("unknown file type");
        if (fileType === "flac") return finish("the emulator does not decode FLAC");
        decoder = new PausedDecoder(fileType, this.generation);
        decodeTask = setInterval(decodeTurn, DECODER_PASS_MS);
        armReadTimeout();
        res.on("data", (d: Buffer) => {
          chunks.push(d);
          received = Buffer.concat(chunks);
          armReadTimeout();
          update();
        });
        res.on("end", () => {
          readerDone = true;
          if (readTimer) clearTimeout(readTimer);
          update();
          if (!info && !settled) finish("no audio in the stream");
          else decodeTurn();
        });
        res.on("error", () => finish("the stream broke"));
      });
      req.on("error", (err) =>
        finish(`cannot fetch (${(err as NodeJS.ErrnoException).code ?? err.message})`),
      );
      armReadTimeout();
      this.current = { stop: () => finish(null, true) };
    });
  }
}
