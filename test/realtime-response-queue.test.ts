/** The response queue, driven directly with a recording `send`. */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import { ResponseQueue } from "../src/realtime/response-queue.js";
import type { TurnMode } from "../src/realtime/session-config.js";
import { silentLogger } from "./fake-realtime/helpers.js";

function queue(over: { calls?: () => number; turn?: TurnMode; closed?: () => boolean } = {}) {
  const sent: RealtimeClientEvent[] = [];
  let settled = 0;
  const q = new ResponseQueue({
    send: (e) => sent.push(e),
    callsInFlight: over.calls ?? (() => 0),
    closed: over.closed ?? (() => false),
    turn: () => over.turn ?? "client",
    log: silentLogger(),
    settled: () => void settled++,
  });
  const creates = () => sent.filter((e) => e.type === "response.create");
  const cancels = () => sent.filter((e) => e.type === "response.cancel");
  return { q, sent, creates, cancels, settled: () => settled };
}

afterEach(() => void vi.useRealTimers());

describe("ResponseQueue", () => {
  it("sends one response.create at a time; requests meanwhile become one, sent after response.done", () => {
    const { q, creates } = queue();
    q.request();
    q.request();
    expect(creates()).toHaveLength(1);
    expect(creates()[0]?.event_id).toBe(q.lastRequestId);
    expect(q.awaiting).toBe(true);
    q.onCreated("r1");
    q.request();
    expect(creates()).toHaveLength(1);
    expect(q.pending).toBe(true);
    const r = q.take();
    expect(r?.id).toBe("r1");
    q.afterDone(r, true);
    expect(creates()).toHaveLength(2);
    expect(q.pending).toBe(false);
  });

  it("waits for client calls in flight and does nothing once closed", () => {
    let calls = 1;
    let closed = false;
    const { q, creates } = queue({ calls: () => calls, closed: () => closed });
    q.request();
    expect(creates()).toHaveLength(0);
    calls = 0;
    closed = true;
    q.pump();
    expect(creates()).toHaveLength(0);
    closed = false;
    q.pump();
    expect(creates()).toHaveLength(1);
  });

  it("conversation_already_has_active_response: asks again once the active response is done", () => {
    const { q, creates } = queue();
    q.request();
    q.onCreated("server-own");
    // The refusal of ours arrives after a response the server started by itself.
    q.onBusy();
    expect(q.lastRequestId).toBeNull();
    expect(creates()).toHaveLength(1);
    q.afterDone(q.take(), true);
    expect(creates()).toHaveLength(2);
  });

  it("a busy refusal while no response is known retries shortly, not at once", () => {
    vi.useFakeTimers();
    const { q, creates } = queue();
    q.request();
    q.onBusy();
    expect(creates()).toHaveLength(1);
    vi.advanceTimersByTime(300);
    expect(creates()).toHaveLength(2);
  });

  it("stops waiting for a response.created that never comes and sends what is pending", () => {
    vi.useFakeTimers();
    const { q, creates, settled } = queue();
    q.request();
    q.request();
    vi.advanceTimersByTime(9_000);
    expect(creates()).toHaveLength(1);
    vi.advanceTimersByTime(1_500);
    expect(creates()).toHaveLength(2);
    expect(settled()).toBe(1);
  });

  it("a turn abandoned before response.created has that response cancelled by id, never started", () => {
    const { q, creates, cancels } = queue();
    q.request();
    q.cancelTurn();
    q.onCreated("r1");
    expect(cancels()).toEqual([{ type: "response.cancel", response_id: "r1" }]);
    expect(q.isDropped("r1")).toBe(true);
    expect(q.isDropped("r2")).toBe(false);
    // Its busy refusal would not be sent again either.
    expect(creates()).toHaveLength(1);
  });

  it("the busy refusal of an abandoned turn's request is not sent again", () => {
    const { q, creates } = queue();
    q.request();
    q.cancelTurn();
    q.onBusy();
    q.afterDone(null, true);
    expect(creates()).toHaveLength(1);
  });

  it("with server turns: the response the upstream starts after an abandoned turn is cancelled, unless new speech came", () => {
    const a = queue({ turn: "server_vad" });
    a.q.cancelTurn();
    a.q.onCreated("r1");
    expect(a.cancels()).toEqual([{ type: "response.cancel", response_id: "r1" }]);
    const b = queue({ turn: "server_vad" });
    b.q.cancelTurn();
    b.q.onSpeechStarted();
    b.q.onCreated("r2");
    expect(b.cancels()).toEqual([]);
  });

  it("start() is true once per response, and marks speech after a native call", () => {
    const { q } = queue();
    q.onCreated("r1");
    q.nativeCallFinished();
    expect(q.current?.callsDone).toBe(1);
    expect(q.start("other")).toBe(false);
    expect(q.start("r1")).toBe(true);
    expect(q.start("r1")).toBe(false);
    expect(q.current?.spokeAfterCall).toBe(true);
  });

  it("a completed response that ran a native call and said nothing after it asks for one more", () => {
    const { q, creates } = queue();
    q.onCreated("r1");
    q.nativeCallFinished();
    q.afterDone(q.take(), true);
    expect(creates()).toHaveLength(1);
    // Not when it spoke after the call, nor when it did not complete.
    q.onCreated("r2");
    q.nativeCallFinished();
    q.start("r2");
    q.afterDone(q.take(), true);
    expect(creates()).toHaveLength(1);
  });

  it("a native call finished with no response in flight asks for one", () => {
    const { q, creates } = queue();
    q.nativeCallFinished();
    expect(creates()).toHaveLength(1);
  });

  it("cancel keeps an end reason set before; interrupt sets interrupted; both only with a response", () => {
    const { q, cancels } = queue();
    q.cancel();
    q.interrupt();
    expect(cancels()).toHaveLength(0);
    q.onCreated("r1");
    q.interrupt();
    q.cancel();
    expect(q.current?.endReason).toBe("interrupted");
    expect(cancels()).toEqual([{ type: "response.cancel" }, { type: "response.cancel" }]);
  });

  it("close() hands back the response in flight and stops waiting", () => {
    vi.useFakeTimers();
    const { q, creates } = queue();
    q.request();
    q.onCreated("r1");
    expect(q.close()?.id).toBe("r1");
    expect(q.current).toBeNull();
    vi.advanceTimersByTime(20_000);
    expect(creates()).toHaveLength(1);
  });
});
