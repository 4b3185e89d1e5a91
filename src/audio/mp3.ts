/**
 * Streaming MP3 encoding of PCM16 mono, for replies an ESPHome media player plays from a URL (DESIGN §11).
 *
 * The encoder is LAME (LGPL-2.0-or-later) compiled to WebAssembly by the `wasm-media-encoders` package
 * (MIT). The WebAssembly module is compiled once, on first use — never at start-up — and each stream gets
 * its own instance (its own memory), so streams never share encoder state.
 *
 * Format: MPEG-2 Layer III (24 kHz or 16 kHz, one channel), constant bitrate. The device starts playing once
 * its still-encoded buffer holds a second of decoded-format bytes divided by 8 (24 kHz mono: 6000 bytes) on
 * top of what its paused decoder took (its first fill and one frame), so a higher bitrate reaches that
 * threshold after less audio: at {@link MP3_SPEECH_BITRATE_KBPS} = 160 kbit/s (20 000 bytes a second), the
 * largest rate MPEG-2 allows, it is 0.3 s, against 0.375 s at 128 and 1 s at 48. More bits per frame never
 * cost quality, and LAME's CPU time is the same at 128 and 160 (about 3 ms per second of audio here).
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import type * as MediaEncoders from "wasm-media-encoders";

export type Mp3SampleRate = 24000 | 16000;

/** Constant bitrates MPEG-2 Layer III and the encoder both offer (kbit/s). */
export const MP3_BITRATES_KBPS = [8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160] as const;
export type Mp3BitrateKbps = (typeof MP3_BITRATES_KBPS)[number];

/** The bitrate for spoken replies; see the module comment for why. */
export const MP3_SPEECH_BITRATE_KBPS = 160;

/** Samples in one MPEG-2 Layer III frame. */
export const MP3_SAMPLES_PER_FRAME = 576;

/**
 * Silence a decoder plays before the first input sample (LAME's encoder delay, 576, plus the decoder's
 * 529). The end is padded with at least 47 samples up to a whole frame.
 */
export const MP3_ENCODER_DELAY_SAMPLES = 1105;

export interface Mp3EncoderOptions {
  readonly sampleRate: Mp3SampleRate;
  /** One of {@link MP3_BITRATES_KBPS}; anything else throws a RangeError. */
  readonly bitrateKbps: number;
}

/** Thrown by {@link Mp3StreamEncoder.flush} called before the encoder is ready. */
export class Mp3EncoderNotReadyError extends Error {
  constructor() {
    super("the MP3 encoder is still loading: await `ready` before flush()");
    this.name = "Mp3EncoderNotReadyError";
  }
}

type LameEncoder = MediaEncoders.WasmMediaEncoder<"audio/mpeg">;
type LameLibrary = Pick<typeof MediaEncoders, "createEncoder">;
/** The compiled WebAssembly module, as the library hands it to its module callback. */
type LameModule = Parameters<NonNullable<Parameters<LameLibrary["createEncoder"]>[2]>>[0];

let library: Promise<{ lib: LameLibrary; module: LameModule }> | undefined;
let libraryLoaded = false;

/** Compiles LAME once: the first encoder is built from the file's bytes and gives back the module. */
function loadLibrary(): Promise<{ lib: LameLibrary; module: LameModule }> {
  library ??= (async () => {
    const require = createRequire(import.meta.url);
    const [lib, bytes] = await Promise.all([
      import("wasm-media-encoders"),
      readFile(require.resolve("wasm-media-encoders/wasm/mp3")),
    ]);
    let module: LameModule | undefined;
    await lib.createEncoder("audio/mpeg", bytes, (m) => {
      module = m;
    });
    if (module === undefined) throw new Error("the MP3 encoder's WebAssembly module did not compile");
    libraryLoaded = true;
    return { lib, module };
  })();
  library.catch(() => {
    library = undefined; // a later call may try again
  });
  return library;
}

/**
 * One MP3 stream: PCM16 LE mono in (any chunk sizes, odd byte counts carried over), whole MP3 frames out.
 *
 * `encode` and `flush` are synchronous once {@link ready} has resolved. Before that, `encode` keeps the PCM
 * and returns an empty Buffer; the first `encode` after `ready` returns everything kept so far. Output is
 * bytes the caller owns (copied out of the encoder's memory).
 */
export class Mp3StreamEncoder {
  /** Compiles the WebAssembly module (once per process; later calls share it). Rejects if it cannot load. */
  static load(): Promise<void> {
    return loadLibrary().then(() => undefined);
  }

  /** Whether the WebAssembly module has been compiled in this process. */
  static get loaded(): boolean {
    return libraryLoaded;
  }

  /** Resolves when `encode`/`flush` work synchronously; rejects when LAME could not be loaded. */
  readonly ready: Promise<void>;
  readonly sampleRate: Mp3SampleRate;
  readonly bitrateKbps: Mp3BitrateKbps;

  #lame: LameEncoder | undefined;
  #pending: Buffer[] = [];
  #carry: Buffer | undefined;
  #flushed = false;

  constructor(o: Mp3EncoderOptions) {
    if (!(MP3_BITRATES_KBPS as readonly number[]).includes(o.bitrateKbps))
      throw new RangeError(`MP3 bitrate ${o.bitrateKbps} kbit/s: use one of ${MP3_BITRATES_KBPS.join(", ")}`);
    if (o.sampleRate !== 24000 && o.sampleRate !== 16000)
      throw new RangeError(`MP3 sample rate ${String(o.sampleRate)}: use 24000 or 16000`);
    const sampleRate = o.sampleRate;
    const bitrate = o.bitrateKbps as Mp3BitrateKbps;
    this.sampleRate = sampleRate;
    this.bitrateKbps = bitrate;
    this.ready = (async () => {
      const { lib, module } = await loadLibrary();
      const lame = await lib.createEncoder("audio/mpeg", module);
      lame.configure({ sampleRate, channels: 1, bitrate, outputSampleRate: sampleRate });
      this.#lame = lame;
    })();
    this.ready.catch(() => undefined); // surfaced to whoever awaits `ready`
  }

  /** MP3 bytes for `pcm` (PCM16 LE mono at `sampleRate`); may be empty while LAME fills a frame. */
  encode(pcm: Buffer): Buffer {
    if (this.#flushed) throw new Error("encode() after flush(): the MP3 stream has ended");
    const lame = this.#lame;
    if (!lame) {
      if (pcm.length > 0) this.#pending.push(Buffer.from(pcm));
      return Buffer.alloc(0);
    }
    const out: Buffer[] = [];
    if (this.#pending.length > 0) {
      const kept = this.#pending;
      this.#pending = [];
      for (const p of kept) out.push(this.#encodeNow(lame, p));
    }
    out.push(this.#encodeNow(lame, pcm));
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** Ends the stream: the last frames (padded with silence). Further `encode` calls throw. */
  flush(): Buffer {
    const lame = this.#lame;
    if (!lame) throw new Mp3EncoderNotReadyError();
    if (this.#flushed) return Buffer.alloc(0);
    const head = this.encode(Buffer.alloc(0));
    this.#flushed = true;
    this.#carry = undefined;
    return Buffer.concat([head, Buffer.from(lame.finalize())]);
  }

  #encodeNow(lame: LameEncoder, pcm: Buffer): Buffer {
    let bytes = pcm;
    if (this.#carry) {
      bytes = Buffer.concat([this.#carry, pcm]);
      this.#carry = undefined;
    }
    if (bytes.length % 2 === 1) {
      this.#carry = Buffer.from(bytes.subarray(bytes.length - 1));
      bytes = bytes.subarray(0, bytes.length - 1);
    }
    if (bytes.length === 0) return Buffer.alloc(0);
    const n = bytes.length / 2;
    const samples = new Float32Array(n);
    for (let i = 0; i < n; i++) samples[i] = bytes.readInt16LE(i * 2) / 32768;
    return Buffer.from(lame.encode([samples]));
  }
}
