/**
 * The approvals one session asks for, native and client calls alike: each goes to the shared
 * `ApprovalQueue` with the session's device, is announced to the session's listener, and is cancelled
 * when the session ends.
 */
import type {
  ApprovalDecision,
  ApprovalQueue,
  ApprovalRequest,
  PendingApproval,
} from "../approvals/queue.js";

export class SessionApprovals {
  readonly #queue: ApprovalQueue;
  readonly #device: () => string | undefined;
  readonly #announce: (p: PendingApproval) => void;
  readonly #ids = new Set<string>();

  /**
   * `device` is asked at each request (the device asked first); `announce` hears every request the queue
   * holds, synchronously, before its decision.
   */
  constructor(
    queue: ApprovalQueue,
    device: () => string | undefined,
    announce: (p: PendingApproval) => void,
  ) {
    this.#queue = queue;
    this.#device = device;
    this.#announce = announce;
  }

  /** Approvals of this session waiting for a decision. */
  get pending(): number {
    return this.#ids.size;
  }

  /** Asks a person; `id` names the request (a native call's approval request id). */
  async ask(req: Omit<ApprovalRequest, "satelliteId">, id?: string): Promise<ApprovalDecision> {
    const satelliteId = this.#device();
    const full: ApprovalRequest = { ...req, ...(satelliteId !== undefined ? { satelliteId } : {}) };
    const { id: approvalId, decision } = this.#queue.request(full, id);
    this.#ids.add(approvalId);
    const pending = this.#queue.get(approvalId);
    if (pending) this.#announce(pending);
    try {
      return await decision;
    } finally {
      this.#ids.delete(approvalId);
    }
  }

  /** Denies every approval of this session still waiting, with `reason` (source `cancelled`). */
  cancelAll(reason: string): void {
    this.#queue.cancel((p) => this.#ids.has(p.id), reason);
  }
}
