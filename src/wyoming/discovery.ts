/**
 * Supervisor discovery of the Wyoming service (DESIGN §9): running as an add-on, once the port
 * listens, `POST <supervisor>/discovery` with `{service: "wyoming", config: {uri: "tcp://<hostname>:<port>"}}`
 * and the add-on's Supervisor token. Home Assistant then offers the service under Settings → Devices &
 * services. Failures are retried with exponential backoff until one succeeds or `stop()` is called;
 * success is logged once.
 */
import { hostname as osHostname } from "node:os";
import { supervisorBaseUrl, type HaEnv } from "../ha/derive.js";
import type { Logger } from "../log.js";

export interface DiscoveryBackoff {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const DISCOVERY_BACKOFF: DiscoveryBackoff = { initialMs: 1_000, maxMs: 60_000 };
/** One attempt's time limit. */
const ATTEMPT_TIMEOUT_MS = 10_000;

export interface WyomingDiscoveryOptions {
  readonly env: HaEnv;
  /** The bound Wyoming port. */
  readonly port: number;
  readonly logger: Logger;
  /** The container's host name, which Home Assistant resolves on the add-on network. */
  readonly hostname?: string;
  readonly backoff?: DiscoveryBackoff;
}

/** The discovery message for a Wyoming service on `host:port`. */
export function discoveryMessage(
  host: string,
  port: number,
): {
  service: "wyoming";
  config: { uri: string };
} {
  return { service: "wyoming", config: { uri: `tcp://${host}:${port}` } };
}

/** Announces the service to the Supervisor; `start` is a no-op outside an add-on. */
export class WyomingDiscovery {
  readonly #opts: WyomingDiscoveryOptions;
  readonly #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #attempts = 0;
  #done: Promise<boolean> | undefined;

  constructor(opts: WyomingDiscoveryOptions) {
    this.#opts = opts;
  }

  /** Attempts made so far. */
  get attempts(): number {
    return this.#attempts;
  }

  /**
   * Starts announcing (once; later calls return the same promise). Resolves `true` once the Supervisor
   * accepted it, `false` when there is no Supervisor token or `stop()` came first. Never rejects.
   */
  start(): Promise<boolean> {
    this.#done ??= this.#run();
    return this.#done;
  }

  /** Stops retrying and aborts an attempt in flight. */
  stop(): void {
    this.#abort.abort();
    clearTimeout(this.#timer);
  }

  async #run(): Promise<boolean> {
    const token = this.#opts.env.SUPERVISOR_TOKEN?.trim();
    if (!token) return false;
    const { logger, port } = this.#opts;
    const backoff = this.#opts.backoff ?? DISCOVERY_BACKOFF;
    const url = `${supervisorBaseUrl(this.#opts.env)}/discovery`;
    const body = discoveryMessage(this.#opts.hostname ?? osHostname(), port);
    let delay = backoff.initialMs;
    while (!this.#abort.signal.aborted) {
      this.#attempts++;
      const failure = await this.#attempt(url, token, body);
      if (failure === undefined) {
        logger.info({ uri: body.config.uri }, "Wyoming service announced to Home Assistant");
        return true;
      }
      if (this.#abort.signal.aborted) break;
      const log = this.#attempts === 1 ? logger.warn.bind(logger) : logger.debug.bind(logger);
      log({ attempt: this.#attempts, retryInMs: delay }, `Wyoming discovery failed: ${failure}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(this.#timer);
          this.#abort.signal.removeEventListener("abort", done);
          resolve();
        };
        this.#timer = setTimeout(done, delay);
        this.#timer.unref();
        this.#abort.signal.addEventListener("abort", done, { once: true });
      });
      delay = Math.min(backoff.maxMs, delay * 2);
    }
    return false;
  }

  /** One POST; `undefined` on success, else why it failed. */
  async #attempt(url: string, token: string, body: object): Promise<string | undefined> {
    const attempt = new AbortController();
    const cancel = (): void => attempt.abort();
    const timer = setTimeout(cancel, ATTEMPT_TIMEOUT_MS);
    this.#abort.signal.addEventListener("abort", cancel, { once: true });
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: attempt.signal,
      });
      await res.arrayBuffer().catch(() => undefined);
      return res.ok ? undefined : `HTTP ${res.status}`;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    } finally {
      clearTimeout(timer);
      this.#abort.signal.removeEventListener("abort", cancel);
    }
  }
}
