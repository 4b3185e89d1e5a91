/**
 * An MPEG audio frame walker for tests, written from the MPEG-1/2 Layer III header layout (ISO/IEC 11172-3,
 * 13818-3): 11-bit sync, version, layer, bitrate index, sample-rate index, padding. Independent of the encoder.
 */
export interface Mp3Frame {
  readonly offset: number;
  readonly length: number;
  readonly version: "1" | "2" | "2.5";
  readonly sampleRate: number;
  readonly bitrateKbps: number;
  readonly samples: number;
  /** A LAME "Info"/"Xing" tag frame (silent, carries stream metadata). */
  readonly tag: boolean;
}

const BITRATES_V1_L3 = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
const BITRATES_V2_L3 = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
const RATES: Record<string, number[]> = {
  "1": [44100, 48000, 32000],
  "2": [22050, 24000, 16000],
  "2.5": [11025, 12000, 8000],
};

/** Every frame of `buf` in order; throws where the bytes are not a frame (no resynchronisation). */
export function mp3Frames(buf: Buffer): Mp3Frame[] {
  const frames: Mp3Frame[] = [];
  let offset = 0;
  while (offset < buf.length) {
    if (offset + 4 > buf.length) throw new Error(`truncated header at ${offset}`);
    const h = buf.readUInt32BE(offset);
    if (h >>> 21 !== 0x7ff) throw new Error(`no sync word at ${offset}`);
    const versionBits = (h >>> 19) & 3;
    const layerBits = (h >>> 17) & 3;
    if (versionBits === 1 || layerBits !== 1) throw new Error(`not Layer III at ${offset}`);
    const version = versionBits === 3 ? "1" : versionBits === 2 ? "2" : "2.5";
    const bitrateKbps = (version === "1" ? BITRATES_V1_L3 : BITRATES_V2_L3)[(h >>> 12) & 15];
    const sampleRate = RATES[version]![(h >>> 10) & 3];
    if (!bitrateKbps || !sampleRate) throw new Error(`bad bitrate or rate at ${offset}`);
    const padding = (h >>> 9) & 1;
    const samples = version === "1" ? 1152 : 576;
    const length = Math.floor(((samples / 8) * bitrateKbps * 1000) / sampleRate) + padding;
    if (offset + length > buf.length) throw new Error(`truncated frame at ${offset}`);
    const body = buf.toString("latin1", offset + 4, offset + Math.min(length, 40));
    const tag = body.includes("Info") || body.includes("Xing");
    frames.push({ offset, length, version, sampleRate, bitrateKbps, samples, tag });
    offset += length;
  }
  return frames;
}
