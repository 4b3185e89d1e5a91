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

/** A decision taken in the last minutes, so a late answer or a page that showed it can say how it went. */
export interface SettledApproval extends ApprovalDecision {
  readonly id: string;
  readonly server: string;
  readonly tool: string;
  readonly satelliteId?: string;
  readonly settledAt: number;
}

/** Decisions remembered for `settled`/`recent`: at most this many, for at most this long. */
const SETTLED_KEPT = 50;
const SETTLED_MS = 10 * 60_000;

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
  /** Newest last. */
  #settled: SettledApproval[] = [];
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

  /**
   * Denies the pending approvals `filter` selects with source `cancelled` and `reason`, a sentence for
   * the model and for people (the UI shows it): e.g. the conversation or the call that asked ended.
   */
  cancel(filter: (p: PendingApproval) => boolean = () => true, reason = "The conversation ended."): void {
    for (const { pending } of [...this.#entries.values()])
      if (filter(pending)) this.#settle(pending.id, { approve: false, source: "cancelled", reason });
  }

  get(id: string): PendingApproval | undefined {
    return this.#entries.get(id)?.pending;
  }

  /** How a recent approval was decided (kept 10 minutes, the last 50), or undefined. */
  settled(id: string): SettledApproval | undefined {
    return this.#recentSettled().find((s) => s.id === id);
  }

  /** Recent decisions (kept 10 minutes, the last 50), newest first. */
  recent(): SettledApproval[] {
    return this.#recentSettled().reverse();
  }

  #recentSettled(): SettledApproval[] {
    const since = this.#now() - SETTLED_MS;
    this.#settled = this.#settled.filter((s) => s.settledAt > since);
    return [...this.#settled];
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
    const { server, tool, satelliteId } = e.pending;
    this.#settled.push({
      id,
      server,
      tool,
      ...(satelliteId === undefined ? {} : { satelliteId }),
      ...d,
      settledAt: this.#now(),
    });
    if (this.#settled.length > SETTLED_KEPT) this.#settled.shift();
    e.resolve(d);
    this.emit("resolved", e.pending, d);
    return true;
  }
}
