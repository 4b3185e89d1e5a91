/**
 * WebSocket masking in WebAssembly, with the interface of the `bufferutil` package, which `ws` loads
 * when it can (`mask`, `unmask`); the build gives it to the bundled `ws` under that name (build.ts).
 *
 * Every frame a client sends is masked: each payload byte XORed with a byte of a random 4-byte key
 * (RFC 6455 §5.3), and a server unmasks every frame it receives. Without a native `bufferutil`
 * (which publishes no build for Linux on ARM or for musl, the image's) or Node's own
 * `http.websocketMask`, `ws` does this a byte at a time in JavaScript: about 1.1–1.6 µs for an
 * upstream audio append of 1.3 KB, against 0.07–0.09 µs here, copies in and out included.
 * `ws` itself still masks frames under 48 bytes and unmasks those under 32 in JavaScript.
 */
import { WS_MASK_KERNEL_BASE64 } from "./ws-mask-kernel.js";

/** What this file uses of the WebAssembly global (the service's build has no DOM typings). */
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
};

interface Kernel {
  /** The module's one page of memory, the work area. */
  bytes: Uint8Array;
  /** XORs `n` bytes at `at` of the memory in place with the little-endian key word `key`. */
  xor: (at: number, n: number, key: number) => void;
}

let kernel: Kernel | undefined;

/** Compiles the module on first use (about 150 bytes; synchronous). */
function loadKernel(): Kernel {
  if (kernel) return kernel;
  const exports = new WebAssembly.Instance(
    new WebAssembly.Module(Buffer.from(WS_MASK_KERNEL_BASE64, "base64")),
  ).exports as { memory: { buffer: ArrayBuffer }; xor: Kernel["xor"] };
  kernel = { bytes: new Uint8Array(exports.memory.buffer), xor: exports.xor };
  return kernel;
}

/** The key as the kernel reads it: byte i of `key` is byte i of the word, least significant first. */
function keyWord(key: Uint8Array): number {
  return key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24);
}

/**
 * `output[offset + i] = source[i] ^ key[i % 4]` for i below `length` (`ws` sends `source` masked
 * into the frame it writes, after the header). `source` and `output` may be the same bytes.
 */
export function mask(
  source: Uint8Array,
  key: Uint8Array,
  output: Uint8Array,
  offset: number,
  length: number,
): void {
  const k = loadKernel();
  const word = keyWord(key);
  // The work area is one page; a chunk of a multiple of 4 bytes starts the next at key byte 0.
  const chunk = k.bytes.length;
  for (let at = 0; at < length; at += chunk) {
    const n = Math.min(chunk, length - at);
    k.bytes.set(at === 0 && n === source.length ? source : source.subarray(at, at + n), 0);
    k.xor(0, n, word);
    output.set(n === chunk ? k.bytes : k.bytes.subarray(0, n), offset + at);
  }
}

/** Unmasks `buffer` in place (a frame a server received): `buffer[i] ^= key[i % 4]`. */
export function unmask(buffer: Uint8Array, key: Uint8Array): void {
  mask(buffer, key, buffer, 0, buffer.length);
}
