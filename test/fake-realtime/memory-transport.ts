/**
 * An in-memory `RealtimeTransport` that records what the session sends and lets a test play server
 * events (validated by the same edge parser as the `ws` adapter). A `respond` hook answers sent events.
 */
import type { RealtimeClientEvent, RealtimeServerEvent } from "openai/resources/realtime/realtime";
import { parseServerEvent } from "../../src/realtime/events.js";
import type { RealtimeTransport, TransportClose } from "../../src/realtime/transport.js";

let n = 0;
const eid = (): string => `event_mem_${++n}`;

export class MemoryTransport implements RealtimeTransport {
  onevent?: RealtimeTransport["onevent"];
  onclose?: RealtimeTransport["onclose"];
  readonly sent: RealtimeClientEvent[] = [];
  state: "idle" | "open" | "closed" = "idle";
  closeInfo: TransportClose | null = null;
  /** Called after each sent event; default answers `session.update` with `session.updated`. */
  respond: (t: MemoryTransport, ev: RealtimeClientEvent) => void = (t, ev) => {
    if (ev.type === "session.update")
      t.deliver({ type: "session.updated", event_id: eid(), session: ev.session });
  };

  connect(): Promise<void> {
    this.state = "open";
    return Promise.resolve();
  }

  send(event: RealtimeClientEvent): boolean {
    if (this.state !== "open") return false;
    this.sent.push(event);
    queueMicrotask(() => this.respond(this, event));
    return true;
  }

  appendAudio(pcm: Buffer): boolean {
    return this.send({ type: "input_audio_buffer.append", audio: pcm.toString("base64") });
  }

  close(code = 1000, reason = ""): void {
    if (this.state === "closed") return;
    this.serverClose(code, reason);
  }

  /** The upstream ends the connection. */
  serverClose(code: number, reason = ""): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.closeInfo = { code, reason };
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }

  /** Plays one server event through the edge parser, whatever the state (to test stale deliveries). */
  deliver(event: RealtimeServerEvent): void {
    const parsed = parseServerEvent(JSON.stringify(event));
    if (parsed.kind === "event") this.onevent?.(parsed.event);
  }

  /** Plays a raw frame. */
  deliverRaw(text: string): void {
    const parsed = parseServerEvent(text);
    if (parsed.kind === "event") this.onevent?.(parsed.event);
  }

  all<T extends RealtimeClientEvent["type"]>(type: T): Extract<RealtimeClientEvent, { type: T }>[] {
    return this.sent.filter((e): e is Extract<RealtimeClientEvent, { type: T }> => e.type === type);
  }
}

export const eventId = eid;
