/**
 * Approval policy (pure) and the pending-approval queue: first answer wins, timeouts deny with a
 * speakable reason, nothing is ever approved by the queue itself.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { evaluatePolicy, toApiRequireApproval } from "../src/approvals/policy.js";
import { ApprovalQueue, type ApprovalDecision, type PendingApproval } from "../src/approvals/queue.js";

const req = { server: "ha", tool: "HassUnlock", arguments: '{"name":"front door"}', mode: "native" as const };

afterEach(() => {
  vi.useRealTimers();
});

describe("evaluatePolicy", () => {
  it("never allows, always asks", () => {
    expect(evaluatePolicy("never", "x")).toBe("allow");
    expect(evaluatePolicy("always", "x")).toBe("ask");
  });

  it("per-tool maps decide per tool; unlisted tools are asked", () => {
    const map = { HassTurnOn: "never", HassUnlock: "always" } as const;
    expect(evaluatePolicy(map, "HassTurnOn")).toBe("allow");
    expect(evaluatePolicy(map, "HassUnlock")).toBe("ask");
    expect(evaluatePolicy(map, "HassTurnOff")).toBe("ask");
    expect(evaluatePolicy(map, "constructor")).toBe("ask");
    expect(evaluatePolicy(map, "__proto__")).toBe("ask");
  });
});

describe("toApiRequireApproval", () => {
  it("passes the plain forms through", () => {
    expect(toApiRequireApproval("always")).toBe("always");
    expect(toApiRequireApproval("never")).toBe("never");
  });

  it("converts the seed's per-tool map to the API's object form, sorted", () => {
    expect(toApiRequireApproval({ b: "never", a: "never", c: "always" })).toEqual({
      always: { tool_names: ["c"] },
      never: { tool_names: ["a", "b"] },
    });
    expect(toApiRequireApproval({ a: "always" })).toEqual({ always: { tool_names: ["a"] } });
    expect(toApiRequireApproval({})).toBe("always");
  });
});

describe("ApprovalQueue", () => {
  it("resolves with the first answer; later answers are refused", async () => {
    const q = new ApprovalQueue({ timeoutS: 30 });
    const resolved: [PendingApproval, ApprovalDecision][] = [];
    q.on("resolved", (p, d) => resolved.push([p, d]));
    const { id, decision } = q.request(req);
    expect(q.get(id)).toMatchObject({ ...req, id });
    expect(q.answer(id, true, "satellite")).toBe(true);
    expect(q.answer(id, false, "ingress")).toBe(false);
    await expect(decision).resolves.toEqual({ approve: true, source: "satellite" });
    expect(q.size).toBe(0);
    expect(resolved).toHaveLength(1);
  });

  it("a denial carries a reason the model can speak", async () => {
    const q = new ApprovalQueue({ timeoutS: 30 });
    const { id, decision } = q.request(req);
    q.answer(id, false, "ingress");
    await expect(decision).resolves.toEqual({
      approve: false,
      source: "ingress",
      reason: "A person declined HassUnlock.",
    });
  });

  it("denies on timeout and never approves by itself", async () => {
    vi.useFakeTimers();
    const q = new ApprovalQueue({ timeoutS: 30 });
    let settled: ApprovalDecision | undefined;
    const { decision } = q.request(req);
    void decision.then((d) => (settled = d));
    await vi.advanceTimersByTimeAsync(29_000);
    expect(settled).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1_500);
    expect(settled).toEqual({
      approve: false,
      source: "timeout",
      reason: "Nobody approved HassUnlock within 30 seconds, so it was not run.",
    });
  });

  it("uses a given id (the upstream approval_request_id) and refuses duplicates", () => {
    const q = new ApprovalQueue({ timeoutS: 30, now: () => 1000 });
    const { id } = q.request(req, "mcpr_1");
    expect(id).toBe("mcpr_1");
    expect(q.get("mcpr_1")).toMatchObject({ createdAt: 1000, expiresAt: 31_000 });
    expect(() => q.request(req, "mcpr_1")).toThrow(/already pending/);
    q.cancel();
  });

  it("lists oldest first and cancels by filter", async () => {
    let t = 0;
    const q = new ApprovalQueue({ timeoutS: 30, now: () => ++t });
    const a = q.request({ ...req, satelliteId: "kitchen" });
    const b = q.request({ ...req, satelliteId: "office" });
    expect(q.list().map((p) => p.id)).toEqual([a.id, b.id]);
    q.cancel((p) => p.satelliteId === "kitchen", "The conversation ended.");
    await expect(a.decision).resolves.toEqual({
      approve: false,
      source: "cancelled",
      reason: "The conversation ended.",
    });
    expect(q.list().map((p) => p.id)).toEqual([b.id]);
    expect(q.answer("nope", true, "ingress")).toBe(false);
    q.cancel();
    await expect(b.decision).resolves.toMatchObject({ approve: false, source: "cancelled" });
  });
});
