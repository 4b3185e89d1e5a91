/** Audio of the fake Realtime server: PCM16 24 kHz mono tones and loudness. */

export const SAMPLE_RATE = 24_000;
/** The fake's VAD frame: 10 ms. */
export const FRAME_SAMPLES = 240;

/** A sine tone, PCM16 LE mono at `rate`. */
export function sine(ms: number, rate: number, hz: number, amplitude: number): Buffer {
  const n = Math.round((rate * ms) / 1000);
  const out = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++)
    out.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * amplitude * 32767), i * 2);
  return out;
}

/** A tone, PCM16 24 kHz mono. */
export function tone(ms: number, hz = 440, amplitude = 0.3): Buffer {
  return sine(ms, SAMPLE_RATE, hz, amplitude);
}

/** RMS of PCM16 samples, 0..1. */
export function rms(pcm: Buffer, start = 0, end = pcm.length): number {
  let sum = 0;
  let n = 0;
  for (let i = start; i + 1 < end; i += 2) {
    const s = pcm.readInt16LE(i) / 32768;
    sum += s * s;
    n++;
  }
  return n === 0 ? 0 : Math.sqrt(sum / n);
}
