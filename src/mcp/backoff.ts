/** When a client-mode MCP server that failed or was lost is tried again. */

export interface Backoff {
  /** First retry delay (before jitter). */
  readonly initialMs: number;
  /** Longest delay between retries. */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 1000, maxMs: 60_000 };

/**
 * Retry delay for the `attempt`-th consecutive failure (0-based): `initialMs · 2^attempt` capped at
 * `maxMs`, then "equal jitter": a uniformly random value in [delay/2, delay].
 */
export function backoffDelay(backoff: Backoff, attempt: number, random: () => number = Math.random): number {
  const exp = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(exp / 2 + random() * (exp / 2));
}
