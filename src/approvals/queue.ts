/**
 * Pending approvals waiting for a person. Satellites and the ingress API answer them; the first
 * answer wins; no answer before the timeout is a denial with a reason the model can speak.
 * Nothing here ever approves by itself.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";

export type ApprovalSource = "satellite" | "ingress" | "timeout" | "policy" | "cancelled";

export interface ApprovalRequest {
  readonly server: string;
  readonly tool: string;
  /** Raw JSON arguments string as the model produced it. */
  readonly arguments: string;
  readonly mode: "native" | "client";
  /** Satellite that started the conversation, if any (its device is asked first). */
  readonly satelliteId?: string;
}

export interface PendingApproval extends ApprovalRequest {
  readonly id: string;
  readonly createdAt: number;
  readonly expiresAt: number;
}

export interface ApprovalDecision {
  readonly approve: boolean;
  readonly source: ApprovalSource;
  /** For denials: a sentence the model can relay. */
  readonly reason?: string;
}

interface Entry {
  readonly pending: PendingApproval;
  readonly resolve: (d: ApprovalDecision) => void;
  readonly timer: NodeJS.Timeout;
}

export interface ApprovalQueueEvents {
  added: [PendingApproval];
  resolved: [PendingApproval, ApprovalDecision];
}

export class ApprovalQueue extends EventEmitter<ApprovalQueueEvents> {
  readonly #entries = new Map<string, Entry>();
  readonly #timeoutMs: number;
  readonly #now: () => number;

  constructor(opts: { timeoutS: number; now?: () => number }) {
    super();
    this.#timeoutMs = opts.timeoutS * 1000;
    this.#now = opts.now ?? Date.now;
  }

  get timeoutS(): number {
    return this.#timeoutMs / 1000;
  }

  /**
   * Adds a request and resolves with the first answer, a timeout denial, or a cancellation denial.
   * `id` may be given (e.g. the upstream's approval_request_id); it must be unique among pending.
   */
  request(
    req: ApprovalRequest,
    id: string = randomUUID(),
  ): { id: string; decision: Promise<ApprovalDecision> } {
    if (this.#entries.has(id)) throw new Error(`approval ${id} is already pending`);
    const createdAt = this.#now();
    const pending: PendingApproval = { ...req, id, createdAt, expiresAt: createdAt + this.#timeoutMs };
    const decision = new Promise<ApprovalDecision>((resolve) => {
      const timer = setTimeout(() => {
        this.#settle(id, {
          approve: false,
          source: "timeout",
          reason: `Nobody approved ${req.tool} within ${this.timeoutS} seconds, so it was not run.`,
        });
      }, this.#timeoutMs);
      timer.unref();
      this.#entries.set(id, { pending, resolve, timer });
    });
    this.emit("added", pending);
    return { id, decision };
  }

  /** Answers a pending approval. Returns false when it is unknown or already answered. */
  answer(id: string, approve: boolean, source: "satellite" | "ingress"): boolean {
    return this.#settle(
      id,
      approve ? { approve, source } : { approve, source, reason: `A person declined ${this.#toolOf(id)}.` },
    );
  }

  /** Denies every pending approval (e.g. the conversation ended). */
  cancel(filter: (p: PendingApproval) => boolean = () => true, reason = "The conversation ended."): void {
    for (const { pending } of [...this.#entries.values()])
      if (filter(pending)) this.#settle(pending.id, { approve: false, source: "cancelled", reason });
  }

  get(id: string): PendingApproval | undefined {
    return this.#entries.get(id)?.pending;
  }

  /** Pending approvals, oldest first. */
  list(): PendingApproval[] {
    return [...this.#entries.values()].map((e) => e.pending).sort((a, b) => a.createdAt - b.createdAt);
  }

  get size(): number {
    return this.#entries.size;
  }

  #toolOf(id: string): string {
    return this.#entries.get(id)?.pending.tool ?? "the tool";
  }

  #settle(id: string, d: ApprovalDecision): boolean {
    const e = this.#entries.get(id);
    if (!e) return false;
    this.#entries.delete(id);
    clearTimeout(e.timer);
    e.resolve(d);
    this.emit("resolved", e.pending, d);
    return true;
  }
}
