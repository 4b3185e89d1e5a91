/**
 * Wyoming framing (DESIGN §9), separate from every event: an event is one line of UTF-8 JSON ending
 * in `\n` (`{type, data?, data_length?, payload_length?, version?}`), then exactly `data_length` bytes
 * of UTF-8 JSON data (merged over any inline `data`), then exactly `payload_length` bytes of payload.
 *
 * The reader is incremental: feed it whatever the socket delivers, in pieces of any size, and it
 * returns the whole events it completed. Limits are checked as soon as they can be (a header line is
 * rejected once it passes the limit without a newline; a length field before its bytes arrive), so a
 * hostile peer never makes us buffer more than a limit plus one socket read.
 */
import type { WyomingErrorCode } from "../errors.js";

/** Byte limits of one event. The header limit is the line reader limit of Python's asyncio (64 KiB). */
export interface FramingLimits {
  /** Bytes of the header line, without its `\n`. */
  readonly maxHeaderBytes: number;
  /** `data_length`. */
  readonly maxDataBytes: number;
  /** `payload_length`. */
  readonly maxPayloadBytes: number;
}

export const FRAMING_LIMITS: FramingLimits = {
  maxHeaderBytes: 64 * 1024,
  maxDataBytes: 1024 * 1024,
  maxPayloadBytes: 1024 * 1024,
};

/**
 * The protocol version we write in every header: the OHF-Voice/wyoming release whose events this
 * implementation follows. Transcript, synthesize and handled streaming came in 1.7.0, the handle
 * program's `supports_home_control` in 1.9.0 (1.8.0 only fixed zeroconf). The ASR program's
 * `requires_external_vad` and `prefers_*` flags came after 1.9.0; readers of 1.9.0 and older skip them.
 * Readers ignore the header's version.
 */
export const WYOMING_VERSION = "1.9.0";

/** One event on the wire, before any event-specific validation. */
export interface WyomingFrame {
  readonly type: string;
  /** Inline `data` merged with the data part; `{}` when there is neither. */
  readonly data: Record<string, unknown>;
  /** Present only when `payload_length` > 0. */
  readonly payload?: Buffer;
  /** The sender's `version`, when it wrote one. */
  readonly version?: string;
}

/** Why a byte stream is not Wyoming. Every one of these ends the connection. */
export type FramingErrorCode = Extract<
  WyomingErrorCode,
  "bad_header" | "header_too_large" | "bad_data" | "data_too_large" | "payload_too_large" | "truncated"
>;

export class FramingError extends Error {
  readonly code: FramingErrorCode;
  constructor(code: FramingErrorCode, message: string) {
    super(message);
    this.name = "FramingError";
    this.code = code;
  }
}

const NEWLINE = 0x0a;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8")) as unknown;
  } catch {
    return undefined;
  }
}

/** `undefined`/`null`/0 → 0; a non-negative integer → itself; anything else → `undefined` (invalid). */
function lengthField(v: unknown): number | undefined {
  if (v === undefined || v === null) return 0;
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

interface PendingHeader {
  readonly type: string;
  readonly inline: Record<string, unknown>;
  readonly dataLength: number;
  readonly payloadLength: number;
  readonly version?: string;
}

/**
 * Incremental reader of one connection's byte stream. Not reusable after it throws: a
 * `FramingError` means the stream is out of step and the connection must close.
 */
export class WyomingFrameReader {
  readonly #limits: FramingLimits;
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Bytes at the start of the buffer already searched for a newline. */
  #scanned = 0;
  #header: PendingHeader | undefined;

  constructor(limits: Partial<FramingLimits> = {}) {
    this.#limits = { ...FRAMING_LIMITS, ...limits };
  }

  /** Bytes held for an event that is not complete yet. */
  get buffered(): number {
    return this.#buffered;
  }

  /** True while part of an event has arrived and the rest has not. */
  get midEvent(): boolean {
    return this.#header !== undefined || this.#buffered > 0;
  }

  /**
   * Adds bytes; returns every event they complete, in order.
   * @throws FramingError when the stream breaks the framing or a limit.
   */
  push(chunk: Buffer): WyomingFrame[] {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    const out: WyomingFrame[] = [];
    for (;;) {
      const frame = this.#next();
      if (frame === undefined) return out;
      out.push(frame);
    }
  }

  /**
   * The peer closed its side. @throws FramingError (`truncated`) when the stream ended inside an
   * event; a clean end between events returns quietly.
   */
  end(): void {
    if (this.#header !== undefined || this.#buffered > 0)
      throw new FramingError("truncated", "the connection ended in the middle of an event");
  }

  #next(): WyomingFrame | undefined {
    if (this.#header === undefined) {
      const line = this.#takeLine();
      if (line === undefined) return undefined;
      this.#header = this.#parseHeader(line);
    }
    const h = this.#header;
    if (this.#buffered < h.dataLength + h.payloadLength) return undefined;
    this.#header = undefined;
    let data = h.inline;
    if (h.dataLength > 0) {
      const parsed = parseJson(this.#take(h.dataLength));
      if (!isObject(parsed)) throw new FramingError("bad_data", "the data part is not a JSON object");
      data = { ...h.inline, ...parsed };
    }
    const payload = h.payloadLength > 0 ? this.#take(h.payloadLength) : undefined;
    return {
      type: h.type,
      data,
      ...(payload === undefined ? {} : { payload }),
      ...(h.version === undefined ? {} : { version: h.version }),
    };
  }

  #parseHeader(line: Buffer): PendingHeader {
    const parsed = parseJson(line);
    if (!isObject(parsed)) throw new FramingError("bad_header", "the header line is not a JSON object");
    const { type, data, data_length, payload_length, version } = parsed;
    if (typeof type !== "string" || type === "")
      throw new FramingError("bad_header", "the header has no event type");
    if (data !== undefined && data !== null && !isObject(data))
      throw new FramingError("bad_header", "the inline data is not a JSON object");
    const dataLength = lengthField(data_length);
    const payloadLength = lengthField(payload_length);
    if (dataLength === undefined || payloadLength === undefined)
      throw new FramingError("bad_header", "data_length and payload_length must be non-negative integers");
    if (dataLength > this.#limits.maxDataBytes)
      throw new FramingError(
        "data_too_large",
        `data_length ${dataLength} is over ${this.#limits.maxDataBytes}`,
      );
    if (payloadLength > this.#limits.maxPayloadBytes)
      throw new FramingError(
        "payload_too_large",
        `payload_length ${payloadLength} is over ${this.#limits.maxPayloadBytes}`,
      );
    return {
      type,
      inline: isObject(data) ? data : {},
      dataLength,
      payloadLength,
      ...(typeof version === "string" ? { version } : {}),
    };
  }

  /** The next line without its `\n`, or `undefined` until one is complete. */
  #takeLine(): Buffer | undefined {
    let offset = 0;
    for (const chunk of this.#chunks) {
      if (offset + chunk.length > this.#scanned) {
        const from = Math.max(0, this.#scanned - offset);
        const at = chunk.indexOf(NEWLINE, from);
        if (at !== -1) {
          const length = offset + at;
          if (length > this.#limits.maxHeaderBytes) this.#headerTooLarge();
          const line = this.#take(length);
          this.#take(1);
          this.#scanned = 0;
          return line;
        }
      }
      offset += chunk.length;
    }
    this.#scanned = this.#buffered;
    if (this.#buffered > this.#limits.maxHeaderBytes) this.#headerTooLarge();
    return undefined;
  }

  #headerTooLarge(): never {
    throw new FramingError(
      "header_too_large",
      `the header line is over ${this.#limits.maxHeaderBytes} bytes`,
    );
  }

  /** Removes and returns the first `n` buffered bytes (`n` ≤ buffered). */
  #take(n: number): Buffer {
    const first = this.#chunks[0];
    if (first !== undefined && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      this.#buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0]!;
      const used = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, used);
      filled += used;
      if (used === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(used);
    }
    this.#buffered -= n;
    return out;
  }
}

/** What the writer needs of an event. */
export interface OutgoingFrame {
  readonly type: string;
  readonly data?: Readonly<Record<string, unknown>>;
  readonly payload?: Buffer;
}

/**
 * The bytes of one event, as the Python writer lays them out: `data` goes in the data part (never
 * inline), and `data_length` / `payload_length` are written only when not zero. `undefined` values in
 * `data` are left out (JSON), `null` values stay.
 */
export function encodeFrame(frame: OutgoingFrame): Buffer {
  const json = frame.data === undefined ? "{}" : JSON.stringify(frame.data);
  const dataBytes = json === "{}" ? undefined : Buffer.from(json, "utf8");
  const payload = frame.payload !== undefined && frame.payload.length > 0 ? frame.payload : undefined;
  const header: Record<string, unknown> = { type: frame.type, version: WYOMING_VERSION };
  if (dataBytes !== undefined) header.data_length = dataBytes.length;
  if (payload !== undefined) header.payload_length = payload.length;
  const parts: Buffer[] = [Buffer.from(`${JSON.stringify(header)}\n`, "utf8")];
  if (dataBytes !== undefined) parts.push(dataBytes);
  if (payload !== undefined) parts.push(payload);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
