/**
 * The device side of a test: a real `ws` client that records every frame it receives with its
 * arrival time, and waits (bounded) for a frame or for the close. Each kind of device says how a
 * frame is recorded (`record`) and what a failed wait shows (`seen`).
 */
import { WebSocket, type ClientOptions } from "ws";

export interface RecordedFrame {
  /** `performance.now()` when the frame arrived. */
  at: number;
  binary?: Buffer;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

export abstract class RecordingSocket<F extends RecordedFrame> {
  readonly ws: WebSocket;
  /** Every frame received, in arrival order. */
  readonly frames: F[] = [];
  /** Set once the socket closed. */
  closed: CloseInfo | null = null;
  readonly #waitMs: number;
  readonly #closedP: Promise<CloseInfo>;
  #notify: (() => void)[] = [];

  /** `waitMs`: the default bound of `waitFor` and `waitClose`. */
  protected constructor(url: string, opts: ClientOptions, waitMs: number) {
    this.#waitMs = waitMs;
    this.ws = new WebSocket(url, opts);
    this.#closedP = new Promise((resolve) => {
      this.ws.once("close", (code, reason) => {
        this.closed = { code, reason: reason.toString() };
        this.#wake();
        resolve(this.closed);
      });
    });
    this.ws.on("message", (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
      const f = this.record(buf, isBinary, performance.now());
      this.frames.push(f);
      this.recorded(f);
      this.#wake();
    });
  }

  /** The frame to keep for one message (may throw on a frame the device cannot read). */
  protected abstract record(data: Buffer, isBinary: boolean, at: number): F;

  /** What a failed wait shows of what arrived. */
  protected abstract seen(): unknown;

  /** Called after each frame is recorded. */
  protected recorded(_frame: F): void {}

  /** Resolves once open; rejects with `refused(status)` for a refused upgrade, or the socket's error. */
  protected opened(refused?: (status: number) => Error): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      if (refused) this.ws.once("unexpected-response", (_req, res) => reject(refused(res.statusCode ?? 0)));
      this.ws.once("error", reject);
    });
  }

  #wake(): void {
    for (const n of this.#notify.splice(0)) n();
  }

  /** The binary frames. */
  audio(): F[] {
    return this.frames.filter((f) => f.binary !== undefined);
  }

  /** Waits until `pred` holds for a frame at or after index `from`; rejects on close or timeout. */
  async waitFor(pred: (f: F) => boolean, timeoutMs = this.#waitMs, from = 0): Promise<F> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const hit = this.frames.slice(from).find(pred);
      if (hit) return hit;
      if (this.closed)
        throw new Error(
          `closed (${this.closed.code}) before the expected frame arrived; got ${JSON.stringify(this.seen())}`,
        );
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out; got ${JSON.stringify(this.seen())}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#notify.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the close (bounded). */
  async waitClose(timeoutMs = this.#waitMs): Promise<CloseInfo> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error("socket did not close in time")), timeoutMs);
    });
    try {
      return await Promise.race([this.#closedP, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  /** Drops the connection at once (no close handshake). Idempotent. */
  close(): void {
    if (this.ws.readyState !== this.ws.CLOSED) this.ws.terminate();
  }
}
