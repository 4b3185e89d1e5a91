import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { outcomeOf, ShownApprovals } from "../src/satellite/approvals-shown.js";
import type { ApprovalOutcome } from "../src/satellite/events.js";

const prompt = { server: "ha", tool: "unlock", arguments: '{"door":"front"}' };
const request = { ...prompt, mode: "client" as const };

describe("ShownApprovals", () => {
  const queues: ApprovalQueue[] = [];
  afterEach(() => {
    for (const q of queues.splice(0)) q.cancel();
  });
  const setUp = () => {
    const queue = new ApprovalQueue({ timeoutS: 30 });
    queues.push(queue);
    const done: { id: string; outcome: ApprovalOutcome }[] = [];
    return { queue, done, shown: new ShownApprovals(queue, (d) => done.push(d)) };
  };

  it("shows a pending approval with whole seconds left and reports its end once", () => {
    const { queue, done, shown } = setUp();
    const { id } = queue.request(request);
    const pending = queue.get(id)!;
    expect(shown.show(pending, pending.expiresAt - 2500)).toEqual({ id, ...prompt, timeoutS: 3 });
    expect(queue.listenerCount("resolved")).toBe(1);
    expect(queue.answer(id, false, "ingress")).toBe(true);
    expect(done).toEqual([{ id, outcome: "denied" }]);
    expect(shown.size).toBe(0);
    expect(queue.listenerCount("resolved")).toBe(0);
  });

  it("answers only approvals it shows", () => {
    const { queue, done, shown } = setUp();
    const a = queue.request(request).id;
    const b = queue.request(request).id;
    shown.show(queue.get(a)!);
    expect(shown.answer(b, true)).toBe(false);
    expect(queue.get(b)).toBeDefined();
    expect(shown.answer(a, true)).toBe(true);
    expect(done).toEqual([{ id: a, outcome: "approved" }]);
    expect(shown.answer(a, true)).toBe(false);
  });

  it("does not show an approval already settled, and close stops every report", () => {
    const { queue, done, shown } = setUp();
    const { id } = queue.request(request);
    const pending = queue.get(id)!;
    queue.answer(id, true, "ingress");
    expect(shown.show(pending)).toBeUndefined();
    const other = queue.request(request).id;
    shown.show(queue.get(other)!);
    shown.close();
    queue.cancel();
    expect(done).toEqual([]);
  });

  it("maps each decision to what the device shows", () => {
    expect(outcomeOf({ approve: false, source: "timeout", reason: "" })).toBe("timeout");
    expect(outcomeOf({ approve: false, source: "cancelled", reason: "" })).toBe("cancelled");
    expect(outcomeOf({ approve: true, source: "satellite" })).toBe("approved");
    expect(outcomeOf({ approve: false, source: "policy" })).toBe("denied");
  });
});
