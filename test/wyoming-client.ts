/**
 * A Wyoming test client of our own that speaks the wire the way Home Assistant's client does (Python
 * `wyoming.client.AsyncTcpClient`): it writes each event as a header line with `data_length` and the
 * data in the data part, omitting zero lengths; it reads a line, then exactly `data_length` bytes, then
 * exactly `payload_length` bytes, and `read()` resolves `null` once the server closed (Python's `None`).
 * Its framing is written independently of `src/wyoming/framing.ts`, so each checks the other.
 *
 * The `ha*` helpers replay Home Assistant's call sequences (homeassistant/components/wyoming):
 * `describe` (data.py), speech-to-text legacy (send everything, then read) and concurrent (read while
 * sending, stop sending at the transcript) (stt.py), conversation with context (conversation.py), and
 * text-to-speech plain (tts.py) and streaming.
 */
import { connect, type Socket } from "node:net";

export interface ReceivedEvent {
  readonly type: string;
  readonly data: Record<string, unknown>;
  readonly payload?: Buffer;
  /** The header line as sent. */
  readonly header: Record<string, unknown>;
}

const PCM16_MONO_16K = { rate: 16000, width: 2, channels: 1 } as const;

export class WyomingTestClient {
  readonly socket: Socket;
  /** Every event read so far, in order. */
  readonly received: ReceivedEvent[] = [];
  #buf = Buffer.alloc(0);
  #ended = false;
  #waiters: (() => void)[] = [];
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (b: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, b]);
      this.#wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.once("close", () => {
      this.#ended = true;
      this.#wake();
    });
  }

  /** `localAddress` picks the client's own address (e.g. `127.0.0.2`, another peer on loopback). */
  static connect(port: number, host = "127.0.0.1", localAddress?: string): Promise<WyomingTestClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host, ...(localAddress ? { localAddress } : {}) }, () => {
        socket.off("error", reject);
        resolve(new WyomingTestClient(socket));
      });
      socket.once("error", reject);
    });
  }

  /** Writes one event as the Python writer does (`data` in the data part, zero lengths omitted). */
  write(type: string, data?: Record<string, unknown>, payload?: Buffer): Promise<void> {
    const header: Record<string, unknown> = { type, version: "1.9.0" };
    const dataBytes = data && Object.keys(data).length > 0 ? Buffer.from(JSON.stringify(data)) : undefined;
    if (dataBytes) header.data_length = dataBytes.length;
    if (payload && payload.length > 0) header.payload_length = payload.length;
    const parts: Buffer[] = [Buffer.from(JSON.stringify(header) + "\n")];
    if (dataBytes) parts.push(dataBytes);
    if (payload && payload.length > 0) parts.push(payload);
    return this.writeRaw(Buffer.concat(parts));
  }

  /** Writes bytes as they are (malformed input). Resolves `false` if the socket is gone. */
  writeRaw(bytes: Buffer | string): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || this.socket.writableEnded) return resolve();
      this.socket.write(bytes, () => resolve());
    });
  }

  /**
   * The next event, or `null` when the server closed the connection (also mid-event, like Python's
   * `IncompleteReadError` path). Rejects after `timeoutMs`.
   */
  async read(timeoutMs = 10_000): Promise<ReceivedEvent | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const event = this.#tryParse();
      if (event) {
        this.received.push(event);
        return event;
      }
      if (this.#ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no Wyoming event within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Reads until an event of one of `types` (returned) or the close (`null`). */
  async readUntil(types: readonly string[], timeoutMs = 10_000): Promise<ReceivedEvent | null> {
    for (;;) {
      const e = await this.read(timeoutMs);
      if (e === null || types.includes(e.type)) return e;
    }
  }

  /** Reads every event until the server closes. */
  async readToClose(timeoutMs = 10_000): Promise<ReceivedEvent[]> {
    const out: ReceivedEvent[] = [];
    for (;;) {
      const e = await this.read(timeoutMs);
      if (e === null) return out;
      out.push(e);
    }
  }

  /** Half-closes (no more writes). */
  end(): void {
    this.socket.end();
  }

  /** Closes like `AsyncTcpClient.disconnect`. */
  async close(): Promise<void> {
    this.socket.end();
    this.socket.destroySoon();
    await this.closed;
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  #tryParse(): ReceivedEvent | undefined {
    const nl = this.#buf.indexOf(0x0a);
    if (nl === -1) return undefined;
    const header = JSON.parse(this.#buf.subarray(0, nl).toString("utf8")) as Record<string, unknown>;
    const dataLength = typeof header.data_length === "number" ? header.data_length : 0;
    const payloadLength = typeof header.payload_length === "number" ? header.payload_length : 0;
    const total = nl + 1 + dataLength + payloadLength;
    if (this.#buf.length < total) return undefined;
    let data = (header.data as Record<string, unknown> | undefined) ?? {};
    if (dataLength > 0) {
      const part = JSON.parse(this.#buf.subarray(nl + 1, nl + 1 + dataLength).toString("utf8")) as Record<
        string,
        unknown
      >;
      data = { ...data, ...part };
    }
    const payload =
      payloadLength > 0 ? Buffer.from(this.#buf.subarray(nl + 1 + dataLength, total)) : undefined;
    this.#buf = this.#buf.subarray(total);
    return { type: String(header.type), data, header, ...(payload ? { payload } : {}) };
  }
}

/** Splits PCM into chunks of `ms` milliseconds at 16 kHz mono PCM16. */
export function chunkPcm(pcm: Buffer, ms = 64): Buffer[] {
  const size = (PCM16_MONO_16K.rate * PCM16_MONO_16K.width * ms) / 1000;
  const out: Buffer[] = [];
  for (let i = 0; i < pcm.length; i += size) out.push(pcm.subarray(i, Math.min(pcm.length, i + size)));
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** data.py `load_wyoming_info`: `describe`, read until `info`. */
export async function haDescribe(port: number): Promise<ReceivedEvent | null> {
  const c = await WyomingTestClient.connect(port);
  try {
    await c.write("describe");
    return await c.readUntil(["info"]);
  } finally {
    await c.close();
  }
}

export interface SttResult {
  /** The transcript text, or `null` when the call failed (error event or connection lost). */
  readonly text: string | null;
  readonly error?: ReceivedEvent;
  readonly events: readonly ReceivedEvent[];
  /** Chunks written before the call ended (concurrent style stops at the transcript). */
  readonly chunksSent: number;
}

export interface SttCall {
  readonly language?: string;
  readonly chunks: readonly Buffer[];
  /** Pace between chunks, as a device streams them in real time (0: as fast as possible). */
  readonly intervalMs?: number;
}

async function sttPreamble(c: WyomingTestClient, call: SttCall): Promise<void> {
  await c.write("transcribe", call.language === undefined ? {} : { language: call.language });
  await c.write("audio-start", { ...PCM16_MONO_16K, timestamp: null });
}

/**
 * stt.py until mid-2025: `transcribe`, `audio-start`, every chunk, `audio-stop`, and only then read
 * until `transcript` (an `error` or a close is a failure).
 */
export async function haSttLegacy(port: number, call: SttCall): Promise<SttResult> {
  const c = await WyomingTestClient.connect(port);
  try {
    await sttPreamble(c, call);
    let sent = 0;
    for (const chunk of call.chunks) {
      await c.write("audio-chunk", { ...PCM16_MONO_16K, timestamp: null }, chunk);
      sent++;
      if (call.intervalMs) await sleep(call.intervalMs);
    }
    await c.write("audio-stop", { timestamp: null });
    const e = await c.readUntil(["transcript", "error"]);
    return {
      text: e?.type === "transcript" ? String(e.data.text) : null,
      ...(e?.type === "error" ? { error: e } : {}),
      events: c.received,
      chunksSent: sent,
    };
  } finally {
    await c.close();
  }
}

/**
 * stt.py since mid-2025: uploads the chunks (then `audio-stop`) while reading concurrently; the first
 * `transcript` or `error` ends the call at once (the upload is cancelled).
 */
export async function haSttConcurrent(port: number, call: SttCall): Promise<SttResult> {
  const c = await WyomingTestClient.connect(port);
  let sent = 0;
  let done = false;
  try {
    await sttPreamble(c, call);
    const upload = (async () => {
      for (const chunk of call.chunks) {
        if (done) return;
        await c.write("audio-chunk", { ...PCM16_MONO_16K, timestamp: null }, chunk);
        sent++;
        if (call.intervalMs) await sleep(call.intervalMs);
      }
      if (!done) await c.write("audio-stop", { timestamp: null });
    })();
    const e = await c.readUntil(["transcript", "error"]);
    done = true;
    await upload;
    return {
      text: e?.type === "transcript" ? String(e.data.text) : null,
      ...(e?.type === "error" ? { error: e } : {}),
      events: c.received,
      chunksSent: sent,
    };
  } finally {
    done = true;
    await c.close();
  }
}

export interface HandleCall {
  readonly text: string;
  readonly conversationId: string;
  readonly deviceId?: string;
  readonly satelliteId?: string;
  readonly language?: string;
}

/** conversation.py: `transcript {text, context, language}` on a fresh connection, read until an answer. */
export async function haHandle(
  port: number,
  call: HandleCall,
): Promise<{ readonly answer: ReceivedEvent | null; readonly events: readonly ReceivedEvent[] }> {
  const c = await WyomingTestClient.connect(port);
  try {
    const context: Record<string, string> = { conversation_id: call.conversationId };
    if (call.deviceId) context.device_id = call.deviceId;
    if (call.satelliteId) context.satellite_id = call.satelliteId;
    await c.write("transcript", { text: call.text, language: call.language ?? "en", context });
    const answer = await c.readUntil(["handled", "not-handled", "error"], 60_000);
    return { answer, events: c.received };
  } finally {
    await c.close();
  }
}

export interface TtsResult {
  /** The audio, concatenated; `null` when the connection was lost before `audio-stop`. */
  readonly audio: Buffer | null;
  /** The format of the first chunk (Home Assistant builds its WAV from it). */
  readonly format?: { rate: number; width: number; channels: number };
  readonly events: readonly ReceivedEvent[];
}

function collectAudio(events: readonly ReceivedEvent[]): Pick<TtsResult, "format"> & { audio: Buffer } {
  const chunks = events.filter((e) => e.type === "audio-chunk");
  const first = chunks[0];
  return {
    audio: Buffer.concat(chunks.map((e) => e.payload ?? Buffer.alloc(0))),
    ...(first
      ? {
          format: {
            rate: Number(first.data.rate),
            width: Number(first.data.width),
            channels: Number(first.data.channels),
          },
        }
      : {}),
  };
}

/** tts.py: `synthesize {text, voice?}`, read until `audio-stop`. */
export async function haTts(port: number, text: string, voice?: string): Promise<TtsResult> {
  const c = await WyomingTestClient.connect(port);
  try {
    await c.write("synthesize", voice === undefined ? { text } : { text, voice: { name: voice } });
    const stop = await c.readUntil(["audio-stop"], 60_000);
    const events = [...c.received];
    return stop === null ? { audio: null, events } : { ...collectAudio(events), events };
  } finally {
    await c.close();
  }
}

/**
 * Streaming synthesis: `synthesize-start`, the text in `synthesize-chunk`s, `synthesize` (the whole
 * text, for servers that do not stream), `synthesize-stop`; read until `synthesize-stopped`.
 */
export async function haTtsStreaming(
  port: number,
  chunks: readonly string[],
  voice?: string,
): Promise<TtsResult & { readonly stopped: boolean }> {
  const c = await WyomingTestClient.connect(port);
  try {
    const v = voice === undefined ? {} : { voice: { name: voice } };
    await c.write("synthesize-start", v);
    for (const t of chunks) await c.write("synthesize-chunk", { text: t });
    await c.write("synthesize", { text: chunks.join(""), ...v });
    await c.write("synthesize-stop");
    const end = await c.readUntil(["synthesize-stopped"], 60_000);
    const events = [...c.received];
    return { ...collectAudio(events), events, stopped: end !== null };
  } finally {
    await c.close();
  }
}
