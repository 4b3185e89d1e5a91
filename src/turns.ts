/**
 * Start-up work that follows listening (the warm pool, the MCP client code, each server's first
 * request) runs in pieces, and before each piece the event loop serves the I/O that is waiting: two
 * turns, one in which a connection that has arrived is accepted and one in which its first request
 * is read and answered. A health probe, a scrape or a device that connects while the service starts
 * is then answered after at most the piece already running, instead of after all of them.
 */
export function afterWaitingIo(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}
