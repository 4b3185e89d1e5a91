/**
 * PCM16 mono WAV (RIFF/WAVE) reading and writing, pure over Buffers: fixtures, recordings and
 * diagnostics. Anything that is not 16-bit integer PCM with one channel is rejected with a
 * {@link WavFormatError} saying why.
 */

export interface PcmAudio {
  sampleRate: number;
  /** Mono samples; a fresh array (never a view of the parsed Buffer). */
  samples: Int16Array;
}

export type WavProblem =
  | "not_riff"
  | "truncated"
  | "no_fmt"
  | "no_data"
  | "not_pcm"
  | "not_mono"
  | "not_16_bit"
  | "bad_header"
  | "odd_data";

export class WavFormatError extends Error {
  readonly problem: WavProblem;
  constructor(problem: WavProblem, message: string) {
    super(`invalid WAV: ${message}`);
    this.name = "WavFormatError";
    this.problem = problem;
  }
}

const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;
const RIFF_HEADER_BYTES = 12;
const CHUNK_HEADER_BYTES = 8;

interface FmtChunk {
  channels: number;
  sampleRate: number;
  bitsPerSample: number;
}

/**
 * Parses a RIFF/WAVE buffer: walks every chunk (word-aligned, unknown chunks skipped), requires a
 * `fmt ` chunk describing PCM16 mono before the `data` chunk. A `data` size larger than what the
 * buffer holds (a stream written before its length was known) is read to the end of the buffer.
 * @throws WavFormatError
 */
export function parseWav(buf: Buffer): PcmAudio {
  if (
    buf.length < RIFF_HEADER_BYTES ||
    buf.toString("latin1", 0, 4) !== "RIFF" ||
    buf.toString("latin1", 8, 12) !== "WAVE"
  ) {
    throw new WavFormatError("not_riff", "missing RIFF/WAVE header");
  }
  let fmt: FmtChunk | undefined;
  let offset = RIFF_HEADER_BYTES;
  while (offset + CHUNK_HEADER_BYTES <= buf.length) {
    const id = buf.toString("latin1", offset, offset + 4);
    const size = buf.readUInt32LE(offset + 4);
    const body = offset + CHUNK_HEADER_BYTES;
    if (id === "fmt ") {
      if (body + size > buf.length) throw new WavFormatError("truncated", "fmt chunk runs past the end");
      fmt = readFmt(buf.subarray(body, body + size));
    } else if (id === "data") {
      if (!fmt) throw new WavFormatError("no_fmt", "data chunk before any fmt chunk");
      const available = buf.length - body;
      let bytes = size;
      if (size > available) bytes = available - (available % 2);
      else if (size % 2 !== 0)
        throw new WavFormatError("odd_data", `data chunk of ${size} bytes is not whole PCM16 samples`);
      return { sampleRate: fmt.sampleRate, samples: readSamples(buf, body, bytes / 2) };
    }
    offset = body + size + (size % 2);
  }
  throw new WavFormatError(fmt ? "no_data" : "no_fmt", fmt ? "no data chunk" : "no fmt chunk");
}

function readFmt(chunk: Buffer): FmtChunk {
  if (chunk.length < 16)
    throw new WavFormatError("bad_header", `fmt chunk of ${chunk.length} bytes is too short`);
  let format = chunk.readUInt16LE(0);
  const channels = chunk.readUInt16LE(2);
  const sampleRate = chunk.readUInt32LE(4);
  const blockAlign = chunk.readUInt16LE(12);
  const bitsPerSample = chunk.readUInt16LE(14);
  if (format === WAVE_FORMAT_EXTENSIBLE) {
    // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID, whose first two bytes are the format tag.
    if (chunk.length < 40)
      throw new WavFormatError("bad_header", "WAVE_FORMAT_EXTENSIBLE fmt chunk is too short");
    format = chunk.readUInt16LE(24);
  }
  if (format !== WAVE_FORMAT_PCM) {
    throw new WavFormatError("not_pcm", `format tag 0x${format.toString(16)} is not integer PCM`);
  }
  if (channels !== 1) throw new WavFormatError("not_mono", `${channels} channels, expected mono`);
  if (bitsPerSample !== 16)
    throw new WavFormatError("not_16_bit", `${bitsPerSample} bits per sample, expected 16`);
  if (blockAlign !== 2 || sampleRate === 0) {
    throw new WavFormatError(
      "bad_header",
      `inconsistent fmt chunk (rate ${sampleRate}, block align ${blockAlign})`,
    );
  }
  return { channels, sampleRate, bitsPerSample };
}

function readSamples(buf: Buffer, offset: number, count: number): Int16Array {
  const samples = new Int16Array(count);
  for (let i = 0; i < count; i++) samples[i] = buf.readInt16LE(offset + 2 * i);
  return samples;
}

/** Bytes of the canonical RIFF/WAVE header for PCM16 mono. */
export const WAV_HEADER_BYTES = 44;

/** The 44-byte header of a PCM16 mono WAV whose `data` chunk holds `dataBytes` (RIFF size = 36 + that). */
export function wavHeader(sampleRate: number, dataBytes: number): Buffer {
  const out = Buffer.alloc(WAV_HEADER_BYTES);
  out.write("RIFF", 0, "latin1");
  out.writeUInt32LE(Math.min(0xffffffff, 36 + dataBytes), 4);
  out.write("WAVE", 8, "latin1");
  out.write("fmt ", 12, "latin1");
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(WAVE_FORMAT_PCM, 20);
  out.writeUInt16LE(1, 22);
  out.writeUInt32LE(sampleRate, 24);
  out.writeUInt32LE(sampleRate * 2, 28);
  out.writeUInt16LE(2, 32);
  out.writeUInt16LE(16, 34);
  out.write("data", 36, "latin1");
  out.writeUInt32LE(dataBytes, 40);
  return out;
}

/**
 * The header of a PCM16 mono WAV stream whose length is not known yet: the sizes say "nearly as large as
 * a RIFF file can be" (RIFF 0xFFFFFFFE, data 0xFFFFFFDA), so readers take bytes until the stream ends.
 * Both are even: ESPHome's WAV decoder adds a pad byte to an odd size in 32 bits, and 0xFFFFFFFF would
 * wrap to 0.
 */
export function streamingWavHeader(sampleRate: number): Buffer {
  return wavHeader(sampleRate, 0xfffffffe - 36);
}

/** Encodes PCM16 mono samples as a canonical 44-byte-header WAV file. */
export function encodeWav(samples: Int16Array, sampleRate: number): Buffer {
  const dataBytes = samples.length * 2;
  const out = Buffer.alloc(WAV_HEADER_BYTES + dataBytes);
  wavHeader(sampleRate, dataBytes).copy(out, 0);
  for (let i = 0; i < samples.length; i++) out.writeInt16LE(samples[i]!, WAV_HEADER_BYTES + 2 * i);
  return out;
}
