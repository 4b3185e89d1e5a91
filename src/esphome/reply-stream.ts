/**
 * Reply audio for ESPHome media players (DESIGN §11 "Playback"): each reply is served once, over plain HTTP
 * on the satellite port, at an unguessable URL the device is told in `RUN_START`.
 *
 * - URL: `<base>/api/esphome/reply/<32 hex digits: 128 random bits>.mp3|.wav`. The first GET takes it; any
 *   later GET, an unknown token and a URL not fetched within `unfetchedTtlMs` (default 60 s) get 404.
 * - Content-Type exactly `audio/mpeg` or `audio/wav` (the device picks its decoder from it).
 * - No pacing: PCM written is encoded and sent the moment it arrives; what is written before the device
 *   connects is kept and sent first. `end()` ends the HTTP response at once (after the encoder's last frames).
 * - `hold(true)`: while the device is connected and nothing was written for `keepAliveMs` (default 500 ms),
 *   silence as long as the gap is written, so the device's 5 s read timeout never fires during a tool call or
 *   an approval. Silence counts as stream time (`writtenMs`, `servedMs`).
 */
import { randomBytes } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { FastifyPluginCallback } from "fastify";
import { MP3_ENCODER_DELAY_SAMPLES, MP3_SPEECH_BITRATE_KBPS, Mp3StreamEncoder } from "../audio/mp3.js";
import { streamingWavHeader, WAV_HEADER_BYTES } from "../audio/wav.js";
import type { Logger } from "../log.js";

export type ReplyFormat = "mp3" | "wav";

export const REPLY_PATH_PREFIX = "/api/esphome/reply/";
/** The sample rate of the PCM callers write (the Realtime API's output). */
export const REPLY_SAMPLE_RATE = 24_000;
export const REPLY_CONTENT_TYPES: Record<ReplyFormat, string> = { mp3: "audio/mpeg", wav: "audio/wav" };
const TOKEN_RE = /^([0-9a-f]{32})\.(mp3|wav)$/;
const BYTES_PER_MS = (REPLY_SAMPLE_RATE * 2) / 1000;
/** How often what the device has taken is sampled while its connection is open. */
const PROGRESS_SAMPLE_MS = 50;
/** The most keep-alive silence written at once. */
const MAX_SILENCE_MS = 5000;

/**
 * Why a stream is over. `expired`: never fetched in time; `closed_early`: the device hung up first;
 * `failed`: the encoder could not be loaded; `shutdown`: the server closed.
 */
export type ReplyOutcome = "complete" | "closed_early" | "expired" | "failed" | "shutdown";

export interface ReplyStream {
  /** Where the device fetches it; the path ends in `.mp3` / `.wav`. */
  readonly url: string;
  readonly device: string;
  readonly format: ReplyFormat;
  /** PCM16 LE mono 24 kHz. Ignored after `end()`. */
  write(pcm24k: Buffer): void;
  /** Silence keep-alive on/off (idempotent). */
  hold(on: boolean): void;
  /** Ends the stream: the device gets what is left and the response ends. Idempotent. */
  end(): void;
  /** Ms of audio written so far (the caller's PCM plus keep-alive silence). */
  readonly writtenMs: number;
  /** Ms of audio the device has taken so far (bytes handed to its connection, in `writtenMs` time). */
  readonly servedMs: number;
  /** Resolves when the device's GET arrives. Never rejects; stays pending if it never comes. */
  readonly fetched: Promise<void>;
  /** Resolves when the device closed the stream before its end (the stop word, a wake word). */
  readonly closedEarly: Promise<void>;
  /** Resolves once the stream is over for good, with why. */
  readonly done: Promise<ReplyOutcome>;
}

export interface ReplyStreamsOptions {
  /** Base URL the device reaches the satellite port at (no trailing slash needed); null: not known. */
  readonly baseUrl: string | (() => string | null);
  readonly logger: Logger;
  /** An unfetched URL stops working after this. Default 60 000 ms. */
  readonly unfetchedTtlMs?: number;
  /** Keep-alive period while held. Default 500 ms; at most 1000. */
  readonly keepAliveMs?: number;
  /** MP3 bitrate. Default {@link MP3_SPEECH_BITRATE_KBPS}. */
  readonly mp3BitrateKbps?: number;
}

/** `open()` without a base URL the device can reach. */
export class ReplyUrlUnavailableError extends Error {
  constructor() {
    super("no reply URL the device can reach: set esphome.reply_base_url");
    this.name = "ReplyUrlUnavailableError";
  }
}

/** Encoding of one stream: header + PCM → bytes for the wire. */
interface Encoding {
  readonly header: Buffer;
  readonly ready: Promise<void>;
  encode(pcm: Buffer): Buffer;
  finish(): Buffer;
  /** Stream ms (in input time) of `bytes` wire bytes. */
  msOf(bytes: number): number;
}

function wavEncoding(): Encoding {
  return {
    header: streamingWavHeader(REPLY_SAMPLE_RATE),
    ready: Promise.resolve(),
    encode: (pcm) => pcm,
    finish: () => Buffer.alloc(0),
    msOf: (bytes) => Math.max(0, bytes - WAV_HEADER_BYTES) / BYTES_PER_MS,
  };
}

function mp3Encoding(bitrateKbps: number): Encoding {
  const enc = new Mp3StreamEncoder({ sampleRate: REPLY_SAMPLE_RATE, bitrateKbps });
  const delayMs = (MP3_ENCODER_DELAY_SAMPLES / REPLY_SAMPLE_RATE) * 1000;
  return {
    header: Buffer.alloc(0),
    ready: enc.ready,
    encode: (pcm) => enc.encode(pcm),
    finish: () => enc.flush(),
    msOf: (bytes) => Math.max(0, (bytes * 8) / bitrateKbps - delayMs),
  };
}

class Stream implements ReplyStream {
  readonly url: string;
  readonly device: string;
  readonly format: ReplyFormat;
  readonly fetched: Promise<void>;
  readonly closedEarly: Promise<void>;
  readonly done: Promise<ReplyOutcome>;

  readonly #encoding: Encoding;
  readonly #log: Logger;
  readonly #keepAliveMs: number;
  readonly #forget: () => void;
  #ready = false;
  #failed = false;
  /** Wire bytes not yet handed to the response (before the device connects, or before the encoder loads). */
  #queued: Buffer[] = [];
  /** PCM written before the encoder was ready. */
  #pendingPcm: Buffer[] = [];
  #res: ServerResponse | undefined;
  #sent = 0;
  /** Bytes the connection took (handed to the kernel), sampled while it is open: a closed one forgets. */
  #taken = 0;
  #progress: NodeJS.Timeout | undefined;
  #writtenBytes = 0;
  #lastWriteAt = 0;
  #holding = false;
  #keepAlive: NodeJS.Timeout | undefined;
  #expiry: NodeJS.Timeout | undefined;
  #ending = false;
  #over = false;
  #resolveFetched!: () => void;
  #resolveClosedEarly!: () => void;
  #resolveDone!: (o: ReplyOutcome) => void;

  constructor(o: {
    url: string;
    device: string;
    format: ReplyFormat;
    encoding: Encoding;
    logger: Logger;
    keepAliveMs: number;
    ttlMs: number;
    forget: () => void;
  }) {
    this.url = o.url;
    this.device = o.device;
    this.format = o.format;
    this.#encoding = o.encoding;
    this.#log = o.logger;
    this.#keepAliveMs = o.keepAliveMs;
    this.#forget = o.forget;
    this.fetched = new Promise((r) => (this.#resolveFetched = r));
    this.closedEarly = new Promise((r) => (this.#resolveClosedEarly = r));
    this.done = new Promise((r) => (this.#resolveDone = r));
    this.#queued.push(o.encoding.header);
    this.#expiry = setTimeout(() => this.#finish("expired"), o.ttlMs);
    this.#expiry.unref();
    o.encoding.ready.then(
      () => {
        this.#ready = true;
        const pending = this.#pendingPcm;
        this.#pendingPcm = [];
        for (const pcm of pending) this.#emit(this.#encoding.encode(pcm));
        if (this.#ending) this.#endNow();
      },
      (err: unknown) => {
        this.#failed = true;
        this.#log.error({ err, device: this.device }, "the MP3 encoder could not be loaded");
        this.#finish("failed");
      },
    );
  }

  get writtenMs(): number {
    return this.#writtenBytes / BYTES_PER_MS;
  }

  get servedMs(): number {
    this.#sampleTaken();
    return Math.min(this.writtenMs, this.#encoding.msOf(this.#taken));
  }

  write(pcm24k: Buffer): void {
    if (this.#ending || this.#over || pcm24k.length === 0) return;
    this.#writePcm(Buffer.from(pcm24k));
  }

  hold(on: boolean): void {
    this.#holding = on && !this.#ending && !this.#over;
    if (this.#holding) this.#armKeepAlive();
    else this.#stopKeepAlive();
  }

  end(): void {
    if (this.#ending || this.#over) return;
    this.#ending = true;
    this.#stopKeepAlive();
    if (this.#ready) this.#endNow();
  }

  /** The device's GET: hands the response over and sends what is queued. */
  attach(res: ServerResponse): void {
    clearTimeout(this.#expiry);
    this.#res = res;
    res.writeHead(200, {
      "content-type": REPLY_CONTENT_TYPES[this.format],
      "cache-control": "no-store",
    });
    res.on("drain", () => this.#sampleTaken());
    res.on("finish", () => this.#sampleTaken());
    // Node drops its send buffer when the connection closes, so what was taken is sampled before that.
    this.#progress = setInterval(() => this.#sampleTaken(), PROGRESS_SAMPLE_MS);
    this.#progress.unref();
    res.on("close", () => {
      clearInterval(this.#progress);
      if (!res.writableFinished) {
        this.#log.debug({ device: this.device, servedMs: Math.round(this.servedMs) }, "reply closed early");
        this.#resolveClosedEarly();
        this.#finish("closed_early");
      }
    });
    this.#resolveFetched();
    const queued = this.#queued;
    this.#queued = [];
    for (const b of queued) this.#send(b);
    if (this.#holding) this.#armKeepAlive();
    if (this.#ending && this.#ready) this.#endNow();
  }

  /** Ends the stream from outside (server shutdown). */
  abort(): void {
    this.#res?.destroy();
    this.#finish("shutdown");
  }

  #writePcm(pcm: Buffer): void {
    this.#writtenBytes += pcm.length;
    this.#lastWriteAt = performance.now();
    if (!this.#ready) {
      if (!this.#failed) this.#pendingPcm.push(pcm);
      return;
    }
    this.#emit(this.#encoding.encode(pcm));
  }

  #emit(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.#res) this.#send(bytes);
    else this.#queued.push(bytes);
  }

  #send(bytes: Buffer): void {
    const res = this.#res;
    if (!res || bytes.length === 0 || res.destroyed || res.writableEnded) return;
    this.#sent += bytes.length;
    res.write(bytes);
    this.#sampleTaken();
  }

  #sampleTaken(): void {
    const res = this.#res;
    if (!res || res.destroyed) return;
    this.#taken = Math.max(this.#taken, this.#sent - res.writableLength);
  }

  #endNow(): void {
    if (this.#over) return;
    this.#emit(this.#encoding.finish());
    const res = this.#res;
    if (!res) return; // served in full, then ended, when the device connects
    res.end(() => this.#finish("complete"));
  }

  #armKeepAlive(): void {
    if (this.#keepAlive || !this.#res) return;
    this.#lastWriteAt = Math.max(this.#lastWriteAt, performance.now() - this.#keepAliveMs);
    this.#keepAlive = setInterval(() => {
      const gap = performance.now() - this.#lastWriteAt;
      if (gap < this.#keepAliveMs) return;
      // As long as the gap, so the device's buffer neither drains nor grows; a stalled process is capped.
      const samples = Math.round((Math.min(gap, MAX_SILENCE_MS) * REPLY_SAMPLE_RATE) / 1000);
      this.#writePcm(Buffer.alloc(samples * 2));
    }, this.#keepAliveMs / 2);
    this.#keepAlive.unref();
  }

  #stopKeepAlive(): void {
    clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
  }

  #finish(outcome: ReplyOutcome): void {
    if (this.#over) return;
    this.#over = true;
    this.#ending = true;
    clearTimeout(this.#expiry);
    clearInterval(this.#progress);
    this.#stopKeepAlive();
    this.#queued = [];
    this.#pendingPcm = [];
    if (outcome !== "complete") this.#res?.destroy();
    this.#forget();
    this.#resolveDone(outcome);
  }
}

/**
 * The reply streams of every ESPHome device. Register {@link plugin} on the satellite port's Fastify
 * instance; {@link open} a stream per reply. On Fastify close every open stream is ended (`shutdown`).
 */
export class ReplyStreams {
  readonly #opts: ReplyStreamsOptions;
  /** Streams not fetched yet, by token. */
  readonly #waiting = new Map<string, Stream>();
  /** Every stream not over yet. */
  readonly #live = new Set<Stream>();

  constructor(opts: ReplyStreamsOptions) {
    this.#opts = opts;
  }

  /** Streams open now (fetched or not). */
  get size(): number {
    return this.#live.size;
  }

  /** Loads what `format` needs (the MP3 encoder) ahead of the first reply; safe to call often. */
  prepare(format: ReplyFormat): Promise<void> {
    return format === "mp3" ? Mp3StreamEncoder.load() : Promise.resolve();
  }

  /**
   * A new stream for one reply. The MP3 encoder loads on first use; PCM written meanwhile is kept.
   * @throws ReplyUrlUnavailableError when no base URL is known.
   */
  open(o: { device: string; format: ReplyFormat }): ReplyStream {
    const base = typeof this.#opts.baseUrl === "function" ? this.#opts.baseUrl() : this.#opts.baseUrl;
    if (!base) throw new ReplyUrlUnavailableError();
    const token = randomBytes(16).toString("hex");
    const encoding =
      o.format === "mp3" ? mp3Encoding(this.#opts.mp3BitrateKbps ?? MP3_SPEECH_BITRATE_KBPS) : wavEncoding();
    const stream: Stream = new Stream({
      url: `${base.replace(/\/+$/, "")}${REPLY_PATH_PREFIX}${token}.${o.format}`,
      device: o.device,
      format: o.format,
      encoding,
      logger: this.#opts.logger,
      keepAliveMs: Math.min(1000, this.#opts.keepAliveMs ?? 500),
      ttlMs: this.#opts.unfetchedTtlMs ?? 60_000,
      forget: () => {
        this.#waiting.delete(token);
        this.#live.delete(stream);
      },
    });
    this.#waiting.set(token, stream);
    this.#live.add(stream);
    return stream;
  }

  /** Fastify plugin: `GET /api/esphome/reply/:file`. */
  readonly plugin: FastifyPluginCallback = (app, _opts, done) => {
    app.addHook("preClose", (next) => {
      for (const s of [...this.#live]) s.abort();
      next();
    });
    app.get<{ Params: { file: string } }>(
      `${REPLY_PATH_PREFIX}:file`,
      { logLevel: "warn", exposeHeadRoute: false },
      (req, reply) => {
        const m = TOKEN_RE.exec(req.params.file);
        const stream = m ? this.#waiting.get(m[1]!) : undefined;
        if (!m || !stream || stream.format !== m[2]) {
          return reply.code(404).type("text/plain").send("no such reply (unknown, used or expired)");
        }
        this.#waiting.delete(m[1]!);
        reply.hijack();
        stream.attach(reply.raw);
      },
    );
    done();
  };
}
