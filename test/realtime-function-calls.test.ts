/** Client function calls, driven directly over the recording tool provider and a recording `send`. */
import { describe, expect, it } from "vitest";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import type { ApprovalDecision } from "../src/approvals/queue.js";
import type { RequireApproval } from "../src/config/model.js";
import type { ConversationEvents } from "../src/realtime/conversation.js";
import { FunctionCalls, type OrphanedCallOutput } from "../src/realtime/function-calls.js";
import { RecordingTools, freshMetrics, metricValue, tool } from "./fake-realtime/helpers.js";

function rig(opts: { policy?: RequireApproval; decision?: ApprovalDecision } = {}) {
  const provider = new RecordingTools([tool("ha", "HassTurnOn")]);
  const sent: RealtimeClientEvent[] = [];
  const tools: ConversationEvents["tool"][0][] = [];
  const handed: OrphanedCallOutput[] = [];
  const metrics = freshMetrics();
  const st = { closed: false, orphaned: false, responds: 0, settled: 0, asked: 0 };
  const calls = new FunctionCalls({
    tools: provider,
    functionTools: () => provider.tools(),
    policyOf: () => opts.policy ?? "never",
    ask: () => {
      st.asked++;
      return Promise.resolve(opts.decision ?? { approve: true, source: "satellite" });
    },
    metrics,
    send: (e) => sent.push(e),
    tool: (e) => tools.push(e),
    closed: () => st.closed,
    orphaned: () => st.orphaned,
    handOver: (o) => handed.push(o),
    respond: () => void st.responds++,
    settled: () => void st.settled++,
  });
  return { calls, provider, sent, tools, handed, metrics, st };
}

const outputOf = (sent: RealtimeClientEvent[]) =>
  sent.flatMap((e) =>
    e.type === "conversation.item.create" && e.item.type === "function_call_output" ? [e.item.output] : [],
  );

describe("FunctionCalls", () => {
  it("runs the call, sends its output and asks for a response", async () => {
    const { calls, provider, sent, tools, st } = rig();
    const running = calls.run("call_1", "HassTurnOn", '{"name":"lamp"}');
    expect(calls.inFlight).toBe(1);
    await running;
    expect(calls.inFlight).toBe(0);
    expect(provider.calls).toEqual([{ name: "HassTurnOn", args: '{"name":"lamp"}' }]);
    expect(outputOf(sent)).toEqual(['HassTurnOn ran with {"name":"lamp"}']);
    expect(tools.map((t) => t.status)).toEqual(["started", "completed"]);
    expect(st.responds).toBe(1);
  });

  it("`ask` policy: a denial is the output, counted, and the tool never runs", async () => {
    const { calls, provider, sent, tools, metrics, st } = rig({
      policy: "always",
      decision: { approve: false, source: "satellite", reason: "No." },
    });
    await calls.run("call_1", "HassTurnOn", "{}");
    expect(st.asked).toBe(1);
    expect(provider.calls).toEqual([]);
    expect(JSON.parse(outputOf(sent)[0] ?? "")).toEqual({ error: "not_approved", message: "No." });
    expect(tools).toEqual([{ name: "HassTurnOn", server: "ha", status: "failed" }]);
    expect(
      await metricValue(metrics, "openvoice_tool_calls_total", {
        server: "ha",
        tool: "HassTurnOn",
        mode: "client",
        outcome: "denied",
      }),
    ).toBe(1);
  });

  it("a call of an abandoned turn adds its output but asks for no answer", async () => {
    const { calls, sent, st } = rig();
    const running = calls.run("call_1", "HassTurnOn", "{}");
    calls.newTurn();
    await running;
    expect(outputOf(sent)).toHaveLength(1);
    expect(st.responds).toBe(0);
    expect(st.settled).toBe(1);
  });

  it("after an upstream drop the output is handed over; after our close it is dropped", async () => {
    const a = rig();
    const running = a.calls.run("call_1", "HassTurnOn", "{}");
    a.st.closed = true;
    a.st.orphaned = true;
    await running;
    expect(a.sent).toEqual([]);
    expect(a.handed).toEqual([
      { callId: "call_1", name: "HassTurnOn", arguments: "{}", output: "HassTurnOn ran with {}" },
    ]);
    const b = rig();
    const again = b.calls.run("call_1", "HassTurnOn", "{}");
    b.st.closed = true;
    await again;
    expect(b.handed).toEqual([]);
  });

  it("a provider that throws gives the model an internal error, and abort() reaches the call's signal", async () => {
    const { calls, provider, sent } = rig();
    let signal: AbortSignal | undefined;
    provider.callTool = (_name, _args, opts?: { signal?: AbortSignal }) => {
      signal = opts?.signal;
      return Promise.reject(new Error("boom"));
    };
    const running = calls.run("call_1", "HassTurnOn", "{}");
    calls.abort();
    await running;
    expect(signal?.aborted).toBe(true);
    expect(JSON.parse(outputOf(sent)[0] ?? "")).toEqual({ error: "internal", message: "boom" });
  });
  it("the conversation's own tools: offered over a catalog tool of the same name, run without approval", async () => {
    const { calls, provider, sent, st } = rig({ policy: "always" });
    const ownCalls: string[] = [];
    const own = {
      tools: () => [tool("device", "HassTurnOn")],
      callTool: (name: string, args: string) => {
        ownCalls.push(`${name} ${args}`);
        return Promise.resolve({ ok: true, output: "timer set", outcome: "success" as const, durationMs: 0 });
      },
    };
    expect(calls.setOwn(own)).toBe(true);
    expect(calls.setOwn(own)).toBe(false);
    expect(calls.offered().map((t) => t.server)).toEqual(["device"]);
    await calls.run("call_1", "HassTurnOn", "{}");
    expect(st.asked).toBe(0);
    expect(provider.calls).toEqual([]);
    expect(ownCalls).toEqual(["HassTurnOn {}"]);
    expect(outputOf(sent)).toEqual(["timer set"]);
    expect(calls.setOwn(null)).toBe(true);
    expect(calls.offered().map((t) => t.server)).toEqual(["ha"]);
  });
});
