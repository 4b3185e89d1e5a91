/**
 * When a freshly opened session is usable: the upstream answered at all within the handshake bound,
 * confirmed our configuration (`session.updated`), and every native server's tools were listed, failed,
 * or failed over, all within the ready bound. Every refusal is an `UpstreamUnavailableError` in words.
 */
import { UPSTREAM_MESSAGES, UpstreamUnavailableError } from "./upstream-error.js";

export interface ReadyGateOptions {
  /** Bound for `session.updated` and every native list-tools outcome. */
  readonly readyTimeoutMs: number;
  /** Bound for the first upstream event after the socket opened. */
  readonly handshakeTimeoutMs: number;
  /** No native server is pending or listing. */
  readonly nativeSettled: () => boolean;
  /** The ready bound passed after `session.updated`: servers not listed yet are failed. */
  readonly nativeTimedOut: () => void;
}

export class ReadyGate {
  readonly #o: ReadyGateOptions;
  #waiter: { resolve: () => void; reject: (e: Error) => void } | null = null;
  #updated = false;
  #answered = false;

  constructor(opts: ReadyGateOptions) {
    this.#o = opts;
  }

  /** `wait()` is in progress and not yet refused by `fail`. */
  get waiting(): boolean {
    return this.#waiter !== null;
  }

  /** The upstream sent something on this socket. */
  answered(): void {
    this.#answered = true;
  }

  /** `session.updated` arrived. */
  updated(): void {
    this.#updated = true;
    this.check();
  }

  /**
   * Resolves once usable; rejects on `reject`/`fail` or a bound passing. `early` is a refusal that came
   * before the wait began. At most one wait per gate.
   */
  async wait(early?: Error): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
    const { readyTimeoutMs, handshakeTimeoutMs } = this.#o;
    const timer = setTimeout(() => this.#onReadyTimeout(), readyTimeoutMs);
    timer.unref();
    // A socket OpenAI keeps open and silent is a refused session.
    const handshake = setTimeout(() => {
      if (!this.#answered)
        this.reject(
          new UpstreamUnavailableError(
            "silent",
            `${UPSTREAM_MESSAGES.noAnswer} (nothing within ${handshakeTimeoutMs} ms of connecting)`,
          ),
        );
    }, handshakeTimeoutMs);
    handshake.unref();
    if (early) this.reject(early);
    try {
      this.check();
      await ready;
    } finally {
      clearTimeout(timer);
      clearTimeout(handshake);
    }
  }

  /** Resolves the wait when every condition holds. */
  check(): void {
    if (!this.#waiter || !this.#updated || !this.#o.nativeSettled()) return;
    // A failed server whose failover is still being decided keeps `failed` until it settles;
    // we do not wait for it longer than the ready timeout.
    const w = this.#waiter;
    this.#waiter = null;
    w.resolve();
  }

  /** Refuses the wait (it still counts as `waiting` until `fail` or the session closes). */
  reject(err: Error): void {
    this.#waiter?.reject(err);
  }

  /** Refuses the wait and ends it. */
  fail(err: Error): void {
    this.#waiter?.reject(err);
    this.#waiter = null;
  }

  #onReadyTimeout(): void {
    if (!this.#updated)
      return this.reject(
        new UpstreamUnavailableError(
          "timeout",
          `${UPSTREAM_MESSAGES.notConfirmed} (no session.updated within ${this.#o.readyTimeoutMs} ms)`,
        ),
      );
    this.#o.nativeTimedOut();
  }
}
