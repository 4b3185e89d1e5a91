/**
 * Subscribing a set of handlers to a typed `EventEmitter` and removing exactly that set again, so a
 * subscriber names each event once instead of pairing every `on` with its `off` by hand.
 */
import type { EventEmitter } from "node:events";

/** Handlers by event name, each typed with its event's arguments. */
export type Handlers<E extends Record<keyof E, unknown[]>> = {
  [K in keyof E]?: (...args: E[K]) => void;
};

/**
 * Adds every handler of `handlers` to `emitter`, in their order. The returned function removes exactly
 * those handlers; calling it again does nothing.
 */
export function subscribe<E extends Record<keyof E, unknown[]>>(
  emitter: EventEmitter<E>,
  handlers: NoInfer<Handlers<E>>,
): () => void {
  const target = emitter as unknown as EventEmitter;
  const entries = Object.entries(handlers) as [string, (...args: unknown[]) => void][];
  for (const [name, fn] of entries) target.on(name, fn);
  let subscribed = true;
  return () => {
    if (!subscribed) return;
    subscribed = false;
    for (const [name, fn] of entries) target.off(name, fn);
  };
}
