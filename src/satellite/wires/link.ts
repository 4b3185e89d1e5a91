/**
 * The socket as every wire adapter sees it (`SatelliteLink`), and its `ws` implementation. Wire
 * adapters and the core never import `ws`; only this file and the routes do.
 */
import type { RawData, WebSocket } from "ws";

/** The socket as a wire sees it. Sends after close are ignored by the implementation. */
export interface SatelliteLink {
  sendText(text: string): void;
  sendBinary(data: Buffer): void;
  /** Bytes accepted by `send*` but not yet written to the OS. */
  readonly bufferedAmount: number;
  ping(): void;
  /** Starts the closing handshake; the link terminates the socket if it is not answered in time. */
  close(code: number, reason: string): void;
  /** Destroys the socket at once. */
  terminate(): void;
}

/** What a route feeds into a connection, one call per socket event. */
export interface SatelliteSocketHandler {
  /** A text frame arrived (`byteLength` is its size on the wire). */
  handleText(text: string, byteLength?: number): void;
  /** A binary frame arrived. */
  handleBinary(data: Buffer): void;
  handlePong(): void;
  /** The socket is gone (any reason). Idempotent. */
  handleClosed(): void;
  /** A bug surfaced while handling a frame: this connection closes, others are unaffected. */
  internalError(err: unknown): void;
}

/** The byte stream under a WebSocket (the upgraded `net.Socket`), as far as write batching needs it. */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

/**
 * `SatelliteLink` over a `ws` socket; a close that is not answered within `closeGraceMs` terminates.
 * With `raw` (the stream the WebSocket writes to), every frame sent within one tick — a paced burst
 * of reply audio, a state and its audio — reaches the OS in one write: the stream is corked at the
 * tick's first send and uncorked on `process.nextTick`. Frames and their order are unchanged.
 */
export function wsLink(socket: WebSocket, closeGraceMs: number, raw?: Corkable): SatelliteLink {
  const open = (): boolean => socket.readyState === socket.OPEN;
  let graceTimer: NodeJS.Timeout | undefined;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    raw!.uncork();
  };
  const batch = (): void => {
    if (corked || raw === undefined) return;
    corked = true;
    raw.cork();
    process.nextTick(uncork);
  };
  socket.once("close", () => clearTimeout(graceTimer));
  return {
    sendText: (text) => {
      if (!open()) return;
      batch();
      socket.send(text);
    },
    sendBinary: (data) => {
      if (!open()) return;
      batch();
      socket.send(data, { binary: true });
    },
    get bufferedAmount() {
      return socket.bufferedAmount;
    },
    ping: () => {
      if (open()) socket.ping();
    },
    close: (code, reason) => {
      if (socket.readyState === socket.CLOSED || graceTimer !== undefined) return;
      socket.close(code, reason);
      graceTimer = setTimeout(() => socket.terminate(), closeGraceMs);
      graceTimer.unref();
    },
    terminate: () => socket.terminate(),
  };
}

/** Routes a socket's events into a connection; a throwing handler closes only that connection. */
export function feedSocket(
  socket: WebSocket,
  conn: SatelliteSocketHandler,
  onError: (err: Error) => void,
): void {
  socket.on("message", (data: RawData, isBinary: boolean) => {
    try {
      const buf = toBuffer(data);
      if (isBinary) conn.handleBinary(buf);
      else conn.handleText(buf.toString("utf8"), buf.byteLength);
    } catch (err) {
      conn.internalError(err);
    }
  });
  socket.on("pong", () => conn.handlePong());
  socket.on("error", onError);
  socket.on("close", () => conn.handleClosed());
}

/** One Buffer for whatever `ws` delivered (a Buffer, fragments, or an ArrayBuffer). */
export function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
