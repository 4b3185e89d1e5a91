/**
 * Zero-copy conversions between wire bytes (PCM16 little-endian, as WebSocket frames and the
 * Realtime API carry them) and Int16Array samples. Assumes a little-endian host, as are both
 * add-on architectures (amd64, aarch64).
 */

/**
 * Samples of PCM16 LE `bytes`: a view when the bytes are 2-byte aligned in their ArrayBuffer,
 * otherwise a copy (`ws` may hand out Buffers at odd offsets of a shared pool).
 * @throws RangeError for an odd byte count (callers answer `bad_audio` before getting here).
 */
export function pcm16View(bytes: Uint8Array): Int16Array {
  if (bytes.byteLength % 2 !== 0)
    throw new RangeError(`PCM16 needs an even byte count, got ${bytes.byteLength}`);
  if (bytes.byteOffset % 2 === 0) return new Int16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const copy = new Int16Array(bytes.byteLength / 2);
  new Uint8Array(copy.buffer).set(bytes);
  return copy;
}

/** The PCM16 LE bytes of `samples`, sharing their memory (no copy). */
export function pcm16Bytes(samples: Int16Array): Buffer {
  return Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
}
