/**
 * Native MCP call tracking and the session's approvals, driven directly: a recording `send`, a real
 * `ApprovalQueue` behind `SessionApprovals`, events in the orders the API may send them.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import { ApprovalQueue, type PendingApproval } from "../src/approvals/queue.js";
import type { RequireApproval } from "../src/config/model.js";
import type { ConversationEvents } from "../src/realtime/conversation.js";
import { APPROVED_CALL_WAIT_MS, NativeCalls } from "../src/realtime/native-calls.js";
import { SessionApprovals } from "../src/realtime/session-approvals.js";
import { freshMetrics, metricValue, until } from "./fake-realtime/helpers.js";

type Tool = ConversationEvents["tool"][0];

function rig(policy: RequireApproval = "never") {
  const sent: RealtimeClientEvent[] = [];
  const tools: Tool[] = [];
  const announced: PendingApproval[] = [];
  const queue = new ApprovalQueue({ timeoutS: 5 });
  const approvals = new SessionApprovals(
    queue,
    () => "kitchen",
    (p) => announced.push(p),
  );
  const metrics = freshMetrics();
  const st = { responding: false, responds: 0, finished: 0, closed: false, now: 1000 };
  const calls = new NativeCalls({
    send: (e) => sent.push(e),
    metrics,
    now: () => st.now,
    policyOf: () => policy,
    ask: (req, id) => approvals.ask(req, id),
    tool: (e) => tools.push(e),
    closed: () => st.closed,
    responding: () => st.responding,
    respond: () => void st.responds++,
    finished: () => void st.finished++,
  });
  return { calls, sent, tools, announced, queue, approvals, metrics, st };
}

const request = { id: "mcpr_1", server_label: "ha", name: "HassTurnOn", arguments: '{"name":"lamp"}' };

afterEach(() => void vi.useRealTimers());

describe("NativeCalls", () => {
  it("a call starts and finishes once, whichever of its events come first", async () => {
    const { calls, tools, metrics, st } = rig();
    // Outcome before any item, then the item twice (added and done).
    calls.onOutcome("mcp_1", true);
    expect(tools).toEqual([]);
    calls.onCallSeen("mcp_1", "ha", "HassTurnOn");
    calls.onItemDone({
      id: "mcp_1",
      server_label: "ha",
      name: "HassTurnOn",
      error: "ignored: outcome said ok",
    });
    calls.onOutcome("mcp_1", false);
    expect(tools.map((t) => t.status)).toEqual(["started", "completed"]);
    expect(st.finished).toBe(1);
    expect(
      await metricValue(metrics, "openvoice_tool_calls_total", {
        server: "ha",
        tool: "HassTurnOn",
        mode: "native",
        outcome: "success",
      }),
    ).toBe(1);
  });

  it("a done item alone says how the call went by its error", () => {
    const { calls, tools, st } = rig();
    calls.onItemDone({ id: "mcp_2", server_label: "ha", name: "HassTurnOff", error: { message: "no" } });
    expect(tools).toEqual([
      { name: "HassTurnOff", server: "ha", status: "started" },
      { name: "HassTurnOff", server: "ha", status: "failed" },
    ]);
    expect(st.finished).toBe(1);
  });

  it("policy `never`: approves at once, without asking anyone", async () => {
    const { calls, sent, announced } = rig("never");
    await calls.onApprovalRequest(request);
    await calls.onApprovalRequest(request); // the same request reported again
    expect(announced).toEqual([]);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      type: "conversation.item.create",
      previous_item_id: "mcpr_1",
      item: { type: "mcp_approval_response", approval_request_id: "mcpr_1", approve: true },
    });
  });

  it("asks a person with the session's device; a denial is answered upstream with its reason and a response", async () => {
    const { calls, sent, tools, announced, queue, st } = rig("always");
    const done = calls.onApprovalRequest(request);
    await until(() => announced.length === 1);
    expect(announced[0]).toMatchObject({
      id: "mcpr_1",
      server: "ha",
      tool: "HassTurnOn",
      satelliteId: "kitchen",
    });
    queue.answer("mcpr_1", false, "satellite");
    await done;
    expect(sent[0]).toMatchObject({ item: { approve: false, reason: expect.stringContaining("declined") } });
    expect(tools).toEqual([{ name: "HassTurnOn", server: "ha", status: "failed" }]);
    expect(st.responds).toBe(1);
  });

  it("an approved call that does not show up asks for a response; one that does, or a response running, does not", async () => {
    vi.useFakeTimers();
    const a = rig("never");
    await a.calls.onApprovalRequest(request);
    vi.advanceTimersByTime(APPROVED_CALL_WAIT_MS);
    expect(a.st.responds).toBe(1);

    const b = rig("never");
    await b.calls.onApprovalRequest(request);
    b.calls.onCallSeen("mcp_1", "ha", "HassTurnOn", "mcpr_1");
    vi.advanceTimersByTime(APPROVED_CALL_WAIT_MS);
    expect(b.st.responds).toBe(0);

    const c = rig("never");
    await c.calls.onApprovalRequest(request);
    c.st.responding = true;
    vi.advanceTimersByTime(APPROVED_CALL_WAIT_MS);
    expect(c.st.responds).toBe(0);

    const d = rig("never");
    await d.calls.onApprovalRequest(request);
    d.calls.close();
    vi.advanceTimersByTime(APPROVED_CALL_WAIT_MS);
    expect(d.st.responds).toBe(0);
  });

  it("a decision that arrives after the session closed is not sent", async () => {
    const { calls, sent, announced, queue, st } = rig("always");
    const done = calls.onApprovalRequest(request);
    await until(() => announced.length === 1);
    st.closed = true;
    queue.answer("mcpr_1", true, "satellite");
    await done;
    expect(sent).toEqual([]);
  });
});

describe("SessionApprovals", () => {
  it("counts its own pending approvals and cancels only those", async () => {
    const queue = new ApprovalQueue({ timeoutS: 5 });
    const mine = new SessionApprovals(
      queue,
      () => undefined,
      () => undefined,
    );
    const other = new SessionApprovals(
      queue,
      () => undefined,
      () => undefined,
    );
    const a = mine.ask({ server: "ha", tool: "t", arguments: "{}", mode: "client" });
    const b = other.ask({ server: "ha", tool: "t", arguments: "{}", mode: "client" });
    expect(mine.pending).toBe(1);
    mine.cancelAll("The conversation ended.");
    await expect(a).resolves.toMatchObject({
      approve: false,
      source: "cancelled",
      reason: "The conversation ended.",
    });
    expect(mine.pending).toBe(0);
    expect(other.pending).toBe(1);
    expect(queue.list()).toHaveLength(1);
    other.cancelAll("x");
    await b;
  });
});
