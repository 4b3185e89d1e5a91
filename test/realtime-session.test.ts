/**
 * The session and conversation layers over an in-memory transport: edge parsing, readiness gated on
 * native tool listing, stale events from a replaced socket, the ready timeout.
 */
import { describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { parseServerEvent } from "../src/realtime/events.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import {
  ConversationRecorder,
  RecordingTools,
  freshMetrics,
  makeConfig,
  metricValue,
  silentLogger,
  until,
} from "./fake-realtime/helpers.js";
import { MemoryTransport, eventId } from "./fake-realtime/memory-transport.js";

describe("parseServerEvent", () => {
  it("sorts frames into handled, unknown and invalid", () => {
    expect(parseServerEvent("{nope")).toEqual({ kind: "invalid", issue: "not JSON" });
    expect(parseServerEvent('{"x":1}')).toEqual({ kind: "invalid", issue: "no type" });
    expect(parseServerEvent('{"type":"rate_limits.updated","rate_limits":[]}')).toEqual({
      kind: "unknown",
      type: "rate_limits.updated",
    });
    expect(parseServerEvent('{"type":"something.new"}')).toEqual({ kind: "unknown", type: "something.new" });
    const bad = parseServerEvent('{"type":"response.output_audio.delta","response_id":"r","item_id":"i"}');
    expect(bad.kind).toBe("invalid");
    const good = parseServerEvent(
      '{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"AAA="}',
    );
    expect(good).toMatchObject({
      kind: "event",
      event: { type: "response.output_audio.delta", delta: "AAA=" },
    });
  });
});

function engineWith(
  transports: MemoryTransport[],
  native = false,
  readyTimeoutMs = 2000,
  prepare: (t: MemoryTransport) => void = () => undefined,
) {
  const metrics = freshMetrics();
  const config = makeConfig(
    "wss://upstream.invalid/v1/realtime",
    native ? { mcp_servers: [{ name: "ha", mode: "native", server_url: "https://ha.example/mcp" }] } : {},
  );
  const engine = new RealtimeEngine({
    config,
    tools: new RecordingTools(),
    approvals: new ApprovalQueue({ timeoutS: 5 }),
    logger: silentLogger(),
    metrics,
    limits: { readyTimeoutMs, reconnectDelaysMs: [0, 10] },
    transportFactory: (opts) => {
      expect(opts.url).toBe("wss://upstream.invalid/v1/realtime?model=gpt-realtime");
      expect(opts.apiKey).toBe("sk-test");
      const t = new MemoryTransport();
      prepare(t);
      transports.push(t);
      return t;
    },
  });
  return { engine, metrics };
}

describe("session readiness", () => {
  it("is not ready before every native server listed its tools", async () => {
    const transports: MemoryTransport[] = [];
    const { engine } = engineWith(transports, true);
    let ready = false;
    const started = engine.start({ turn: "client" }).then((c) => {
      ready = true;
      return c;
    });
    await until(() => transports[0]?.all("session.update").length === 1, 1000, "session.update");
    const t = transports[0]!;
    t.deliver({
      type: "conversation.item.added",
      event_id: eventId(),
      item: { type: "mcp_list_tools", id: "l1", server_label: "ha", tools: [] },
    });
    t.deliver({ type: "mcp_list_tools.in_progress", event_id: eventId(), item_id: "l1" });
    await new Promise((r) => setTimeout(r, 30));
    expect(ready).toBe(false);
    expect(engine.status().native[0]!.sessions).toEqual({ listing: 1 });
    t.deliver({ type: "mcp_list_tools.completed", event_id: eventId(), item_id: "l1" });
    const conv = await started;
    expect(engine.status().native[0]!.sessions).toEqual({ listed: 1 });
    await conv.end("done");
    await engine.close();
  });

  it("rejects and closes when session.updated never comes", async () => {
    const transports: MemoryTransport[] = [];
    const { engine, metrics } = engineWith(transports, false, 100, (t) => {
      t.respond = () => undefined;
    });
    const p = engine.start({ turn: "client" });
    await expect(p).rejects.toThrow(/no session.updated within 100 ms/);
    expect(transports[0]!.state).toBe("closed");
    expect(engine.status().upstream).toMatchObject({ state: "unreachable" });
    expect(await metricValue(metrics, "openvoice_realtime_sessions")).toBe(0);
    await engine.close();
  });
});

describe("stale sockets", () => {
  it("drops events from a replaced session after a reconnect", async () => {
    const transports: MemoryTransport[] = [];
    const { engine, metrics } = engineWith(transports);
    const conv = await engine.start({ turn: "client" });
    const rec = new ConversationRecorder(conv);
    const [first] = transports;
    first!.serverClose(1006, "gone");
    await until(() => transports.length === 2 && engine.status().sessions.active === 1, 2000, "reconnected");
    expect(await metricValue(metrics, "openvoice_realtime_reconnects_total")).toBe(1);
    const audio = (response_id: string) =>
      ({
        type: "response.output_audio.delta",
        event_id: eventId(),
        response_id,
        item_id: "it",
        output_index: 0,
        content_index: 0,
        delta: Buffer.alloc(4).toString("base64"),
      }) as const;
    // The dead socket still "delivers": nothing reaches the conversation.
    first!.deliver({ type: "response.created", event_id: eventId(), response: { id: "old" } });
    first!.deliver(audio("old"));
    expect(rec.of("audio")).toHaveLength(0);
    const second = transports[1]!;
    second.deliver({ type: "response.created", event_id: eventId(), response: { id: "new" } });
    second.deliver(audio("new"));
    expect(rec.of("audio").map((a) => a.responseId)).toEqual(["new"]);
    expect(rec.of("response.start").map((r) => r.id)).toEqual(["new"]);
    await conv.end("done");
    await engine.close();
  });
});
