/**
 * Per-connection limits of the satellite endpoint. Defaults are the documented ones (DOCS.md,
 * "Satellite protocol"): change both together.
 */
export interface SatelliteLimits {
  /** A `hello` must arrive this soon after the upgrade. */
  helloTimeoutMs: number;
  /** Keepalive: a WebSocket ping this often… */
  pingIntervalMs: number;
  /** …answered by a pong within this, or the socket is terminated. */
  pongTimeoutMs: number;
  /** Largest accepted frame (text or binary). Larger → `frame_too_large`, close 1009. */
  maxFrameBytes: number;
  /** Token bucket on incoming frames (text + binary): sustained rate and burst. */
  framesPerSecond: number;
  frameBurst: number;
  /** Token bucket on incoming bytes. */
  bytesPerSecond: number;
  byteBurst: number;
  /** More than this many bad frames (`bad_message`, `bad_audio`) within the window closes the socket. */
  maxBadFrames: number;
  badFrameWindowMs: number;
  /** Reply audio frames are dropped while the socket's send buffer holds more than this… */
  sendBufferDropBytes: number;
  /** …and the satellite is closed with `slow_consumer` when it holds more than this. */
  sendBufferCloseBytes: number;
  /** Microphone audio kept while a conversation is being set up; older audio is dropped. */
  pendingMicMs: number;
  /** Reply audio queued for playback; beyond it further audio of the reply is dropped. */
  maxQueuedReplyMs: number;
  /** On barge-in/cancel, how long to wait for `playback.done` before truncating with the pacing clock. */
  playbackDoneWaitMs: number;
  /** Server VAD mode: audio within this long after an idle end does not start a new conversation. */
  restartGuardMs: number;
  /** Grace between a close frame and terminating a socket that does not answer it. */
  closeGraceMs: number;
  /**
   * Open connections authenticated with one device token (`satellites.devices`), handshakes
   * included; one more gets `too_many_connections`, close 1008. The shared token is not capped.
   */
  maxConnectionsPerDeviceToken: number;
}

export const DEFAULT_LIMITS: Readonly<SatelliteLimits> = Object.freeze({
  helloTimeoutMs: 10_000,
  pingIntervalMs: 20_000,
  pongTimeoutMs: 10_000,
  maxFrameBytes: 64 * 1024,
  framesPerSecond: 200,
  frameBurst: 400,
  bytesPerSecond: 256 * 1024,
  byteBurst: 512 * 1024,
  maxBadFrames: 5,
  badFrameWindowMs: 10_000,
  sendBufferDropBytes: 256 * 1024,
  sendBufferCloseBytes: 1024 * 1024,
  pendingMicMs: 5_000,
  maxQueuedReplyMs: 60_000,
  playbackDoneWaitMs: 150,
  restartGuardMs: 2_000,
  closeGraceMs: 2_000,
  maxConnectionsPerDeviceToken: 4,
});

export function resolveLimits(partial: Partial<SatelliteLimits> = {}): SatelliteLimits {
  return { ...DEFAULT_LIMITS, ...partial };
}

/** A token bucket; `take` refills by elapsed time first. Times in ms from an injected clock. */
export class TokenBucket {
  readonly #rate: number;
  readonly #capacity: number;
  #tokens: number;
  #at: number;

  constructor(perSecond: number, capacity: number, now: number) {
    this.#rate = perSecond / 1000;
    this.#capacity = capacity;
    this.#tokens = capacity;
    this.#at = now;
  }

  /** Takes `n` tokens if available; returns false (taking none) otherwise. */
  take(n: number, now: number): boolean {
    this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#at) * this.#rate);
    this.#at = now;
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }
}
