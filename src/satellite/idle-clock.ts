/**
 * The conversation's idle clock: after `delayMs` without being re-armed it asks `busy()`; a busy
 * conversation (a reply playing, a tool running, an approval pending, a held push-to-talk) arms
 * again, otherwise `onIdle` runs once.
 */
export class IdleClock {
  readonly #delayMs: number;
  readonly #busy: () => boolean;
  readonly #onIdle: () => void;
  #timer: NodeJS.Timeout | null = null;

  constructor(opts: { delayMs: number; busy: () => boolean; onIdle: () => void }) {
    this.#delayMs = opts.delayMs;
    this.#busy = opts.busy;
    this.#onIdle = opts.onIdle;
  }

  /** The clock is running. */
  get armed(): boolean {
    return this.#timer !== null;
  }

  /** (Re)starts the clock from now. */
  arm(): void {
    this.clear();
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#busy()) this.arm();
      else this.#onIdle();
    }, this.#delayMs);
  }

  /** Stops the clock; `onIdle` does not run until the next `arm`. Idempotent. */
  clear(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
