/**
 * `RealtimeTransport` over `ws`: `Authorization: Bearer <key>`, no `OpenAI-Beta` header (GA protocol).
 * One instance is one connection; a reconnect makes a new transport, so a stale socket can never
 * deliver into a newer session.
 */
import WebSocket from "ws";
import { parseServerEvent } from "./events.js";
import {
  UpstreamConnectError,
  type RealtimeTransport,
  type TransportClose,
  type TransportOptions,
} from "./transport.js";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";

type Link =
  | { status: "idle" }
  | { status: "connecting"; ws: WebSocket }
  | { status: "open"; ws: WebSocket }
  | { status: "closed"; info: TransportClose };

const APPEND_HEAD = Buffer.from('{"type":"input_audio_buffer.append","audio":"', "latin1");
const APPEND_TAIL = Buffer.from('"}', "latin1");

/**
 * `input_audio_buffer.append` of `pcm` as UTF-8 JSON, the text `JSON.stringify` would make (base64
 * needs no escaping), in a buffer of its own: no `event_id`, as for every append.
 */
function appendText(pcm: Buffer): Buffer {
  const audio = pcm.toString("base64");
  const text = Buffer.allocUnsafe(APPEND_HEAD.length + audio.length + APPEND_TAIL.length);
  APPEND_HEAD.copy(text, 0);
  text.write(audio, APPEND_HEAD.length, "latin1");
  APPEND_TAIL.copy(text, APPEND_HEAD.length + audio.length);
  return text;
}

export class WsRealtimeTransport implements RealtimeTransport {
  onevent?: RealtimeTransport["onevent"];
  onclose?: RealtimeTransport["onclose"];
  readonly #opts: TransportOptions;
  #link: Link = { status: "idle" };

  constructor(opts: TransportOptions) {
    this.#opts = opts;
  }

  get state(): Link["status"] {
    return this.#link.status;
  }

  connect(): Promise<void> {
    if (this.#link.status !== "idle") return Promise.reject(new Error("connect() may be called once"));
    const { url, apiKey, connectTimeoutMs, logger } = this.#opts;
    // No `handshakeTimeout`: the timer below bounds the whole connect. `ws` would set it as the
    // socket's idle timeout and clear it on open, and Node keeps a cleared socket timeout attached:
    // every append written afterwards would refresh it (a timer-list call per frame, for nothing).
    const ws = new WebSocket(url, {
      headers: { Authorization: `Bearer ${apiKey}` },
      maxPayload: 32 * 1024 * 1024,
      // Audio as base64 JSON barely compresses; a deflate context per session costs memory and CPU.
      perMessageDeflate: false,
    });
    this.#link = { status: "connecting", ws };
    return new Promise<void>((resolve, reject) => {
      const fail = (err: UpstreamConnectError): void => {
        clearTimeout(timer);
        if (this.#link.status === "connecting")
          this.#link = { status: "closed", info: { code: 1006, reason: err.message } };
        ws.removeAllListeners();
        ws.on("error", () => undefined);
        ws.terminate();
        reject(err);
      };
      const timer = setTimeout(
        () => fail(new UpstreamConnectError("timeout", `no connection within ${connectTimeoutMs} ms`)),
        connectTimeoutMs,
      );
      timer.unref();
      ws.once("unexpected-response", (_req, res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        fail(new UpstreamConnectError("refused", `upstream refused the connection (HTTP ${status})`, status));
      });
      ws.once("error", (err) => fail(new UpstreamConnectError("network", err.message)));
      ws.once("open", () => {
        clearTimeout(timer);
        ws.removeAllListeners("error");
        ws.removeAllListeners("unexpected-response");
        this.#link = { status: "open", ws };
        ws.on("error", (err) => logger?.debug({ err: err.message }, "realtime socket error"));
        ws.on("message", (data, isBinary) => {
          if (this.#link.status !== "open" || this.#link.ws !== ws) return;
          if (isBinary || !Buffer.isBuffer(data))
            return void logger?.debug("ignored a binary upstream frame");
          const parsed = parseServerEvent(data.toString("utf8"));
          if (parsed.kind === "event") this.onevent?.(parsed.event);
          else if (parsed.kind === "unknown")
            logger?.trace({ type: parsed.type }, "upstream event not handled");
          else logger?.debug({ type: parsed.type, issue: parsed.issue }, "invalid upstream event ignored");
        });
        ws.once("close", (code, reason) => this.#closed({ code, reason: reason.toString("utf8") }));
        resolve();
      });
    });
  }

  send(event: RealtimeClientEvent): boolean {
    if (this.#link.status !== "open") return false;
    this.#link.ws.send(JSON.stringify(event));
    return true;
  }

  appendAudio(pcm: Buffer): boolean {
    if (this.#link.status !== "open") return false;
    // A text frame from bytes: `ws` masks them straight into the frame it writes (one write, no
    // string to flatten, measure and encode again).
    this.#link.ws.send(appendText(pcm), { binary: false });
    return true;
  }

  close(code = 1000, reason = "closing"): void {
    const link = this.#link;
    if (link.status === "open") {
      link.ws.close(code, reason);
      // A peer that never answers the close frame must not keep us waiting.
      const timer = setTimeout(() => link.ws.terminate(), 2000);
      timer.unref();
      link.ws.once("close", () => clearTimeout(timer));
    } else if (link.status === "connecting") {
      link.ws.terminate();
    }
  }

  #closed(info: TransportClose): void {
    if (this.#link.status === "closed") return;
    this.#link = { status: "closed", info };
    this.onclose?.(info);
  }
}

export const createWsTransport = (opts: TransportOptions): RealtimeTransport => new WsRealtimeTransport(opts);
