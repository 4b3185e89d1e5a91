/**
 * The approvals one satellite shows: which pending approvals of the shared queue it was asked to
 * show, and when each ends (answered anywhere, timed out, withdrawn). It listens to the queue only
 * while it shows at least one, so an idle satellite costs the queue nothing.
 */
import type { ApprovalDecision, ApprovalQueue, PendingApproval } from "../approvals/queue.js";
import type { ApprovalOutcome, ApprovalPrompt } from "./events.js";

export class ShownApprovals {
  readonly #queue: ApprovalQueue;
  readonly #onDone: (done: { id: string; outcome: ApprovalOutcome }) => void;
  /** Approvals shown here and still pending; each leaves with one `onDone`. */
  readonly #ids = new Set<string>();
  #watching = false;

  /** `onDone` is called exactly once per prompt `show` returned, after the queue settled it. */
  constructor(queue: ApprovalQueue, onDone: (done: { id: string; outcome: ApprovalOutcome }) => void) {
    this.#queue = queue;
    this.#onDone = onDone;
  }

  /** Approvals shown and not yet settled (as last seen; see {@link prune}). */
  get size(): number {
    return this.#ids.size;
  }

  /**
   * Takes an approval to show: the prompt for the device, or `undefined` when the queue has already
   * settled it (nothing to show, no `onDone` follows). `now` is epoch milliseconds.
   */
  show(p: PendingApproval, now: number = Date.now()): ApprovalPrompt | undefined {
    if (this.#queue.get(p.id) === undefined) return undefined;
    this.#ids.add(p.id);
    this.#watch();
    const timeoutS = Math.max(0, Math.ceil((p.expiresAt - now) / 1000));
    return { id: p.id, server: p.server, tool: p.tool, arguments: p.arguments, timeoutS };
  }

  /**
   * Answers an approval shown here; false (and nothing answered) when this satellite does not show
   * it or the queue no longer holds it.
   */
  answer(id: string, approve: boolean): boolean {
    return this.#ids.has(id) && this.#queue.answer(id, approve, "satellite");
  }

  /** Forgets approvals the queue no longer holds without an `onDone` (their settling was missed). */
  prune(): void {
    for (const id of this.#ids) if (this.#queue.get(id) === undefined) this.#ids.delete(id);
  }

  /** Stops listening; no `onDone` follows. Idempotent. */
  close(): void {
    this.#unwatch();
  }

  readonly #onResolved = (p: PendingApproval, d: ApprovalDecision): void => {
    if (!this.#ids.delete(p.id)) return;
    if (this.#ids.size === 0) this.#unwatch();
    this.#onDone({ id: p.id, outcome: outcomeOf(d) });
  };

  #watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    this.#queue.on("resolved", this.#onResolved);
  }

  #unwatch(): void {
    if (!this.#watching) return;
    this.#watching = false;
    this.#queue.off("resolved", this.#onResolved);
  }
}

/** How a settled approval reads on a device. */
export function outcomeOf(d: ApprovalDecision): ApprovalOutcome {
  if (d.source === "timeout") return "timeout";
  if (d.source === "cancelled") return "cancelled";
  return d.approve ? "approved" : "denied";
}
