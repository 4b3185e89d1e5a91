/**
 * The connected satellites of every wire, one per device id: a newer connection with the same id
 * replaces the older one (`end("replaced", 1000)`).
 */
import type { SatelliteConnection } from "./wires/connection.js";

/** Connected satellites; pass one in the options to read it from elsewhere (status API). */
export class SatelliteRegistry {
  readonly #all = new Set<SatelliteConnection>();
  readonly #byClient = new Map<string, SatelliteConnection>();

  /** Ready satellites (past hello), one per `client_id`. */
  connected(): { clientId: string; name?: string; sessionId: string; state: string | null }[] {
    return [...this.#byClient].map(([clientId, b]) => ({
      clientId,
      ...(b.name === undefined ? {} : { name: b.name }),
      sessionId: b.sessionId,
      state: b.state,
    }));
  }

  /** Ready satellites with the wire each speaks (`v1` or a firmware dialect), for the status page. */
  devices(): { clientId: string; name?: string; dialect: string; state: string | null }[] {
    return [...this.#byClient].map(([clientId, b]) => ({
      clientId,
      ...(b.name === undefined ? {} : { name: b.name }),
      dialect: b.wire,
      state: b.state,
    }));
  }

  get size(): number {
    return this.#byClient.size;
  }

  /** Every bridge, ready or still in the handshake. */
  all(): SatelliteConnection[] {
    return [...this.#all];
  }

  add(bridge: SatelliteConnection): void {
    if (bridge.closed) return; // refused at connect (bad token)
    this.#all.add(bridge);
    bridge.on("ready", ({ clientId }) => {
      const previous = this.#byClient.get(clientId);
      this.#byClient.set(clientId, bridge);
      if (previous !== undefined && previous !== bridge) void previous.end("replaced", 1000);
    });
    bridge.once("closed", () => {
      this.#all.delete(bridge);
      const id = bridge.clientId;
      if (id !== null && this.#byClient.get(id) === bridge) this.#byClient.delete(id);
    });
  }
}
