/**
 * Native MCP calls as the upstream runs them: approval requests (answered by policy or a person), the
 * `mcp_call` items and their outcomes, and the one follow-up response that lets the model speak about a
 * result. The API reports a call through several events in no fixed order; each call starts and finishes
 * exactly once here.
 */
import { randomUUID } from "node:crypto";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import { evaluatePolicy } from "../approvals/policy.js";
import type { ApprovalDecision, ApprovalRequest } from "../approvals/queue.js";
import type { RequireApproval } from "../config/model.js";
import type { Metrics } from "../metrics.js";
import type { ConversationEvents } from "./conversation.js";

/** How long an approved native call may take to show up before we ask for a response to run it. */
export const APPROVED_CALL_WAIT_MS = 1500;

/** A finished `mcp_call` item as the item events carry it. */
export interface McpCallItem {
  readonly id: string;
  readonly server_label: string;
  readonly name: string;
  readonly error?: unknown;
  readonly approval_request_id?: string | null;
}

/** An `mcp_approval_request` item. */
export interface McpApprovalRequestItem {
  readonly id: string;
  readonly server_label: string;
  readonly name: string;
  readonly arguments: string;
}

export interface NativeCallDeps {
  readonly send: (event: RealtimeClientEvent) => void;
  readonly metrics: Metrics;
  readonly now: () => number;
  readonly policyOf: (server: string) => RequireApproval;
  readonly ask: (req: Omit<ApprovalRequest, "satelliteId">, id?: string) => Promise<ApprovalDecision>;
  readonly tool: (e: ConversationEvents["tool"][0]) => void;
  readonly closed: () => boolean;
  /** A response is in flight or asked for (an approved call runs in it). */
  readonly responding: () => boolean;
  /** Asks for a response. */
  readonly respond: () => void;
  /** A call finished: the response it ran in speaks about it, or one is asked for. */
  readonly finished: () => void;
}

interface NativeCall {
  readonly server: string;
  readonly tool: string;
  readonly startedAt: number;
}

export class NativeCalls {
  readonly #d: NativeCallDeps;
  readonly #seenApprovalRequests = new Set<string>();
  readonly #calls = new Map<string, NativeCall>();
  /** Call ids whose completion was handled (the API reports it through several events). */
  readonly #finished = new Set<string>();
  /** Approval requests whose approved `mcp_call` appeared, and the timers waiting for that. */
  readonly #approvedSeen = new Set<string>();
  readonly #followUps = new Set<NodeJS.Timeout>();
  /** `response.mcp_call.completed|failed` that arrived before any item of that call. */
  readonly #outcomes = new Map<string, boolean>();

  constructor(deps: NativeCallDeps) {
    this.#d = deps;
  }

  /**
   * An `mcp_approval_request` item (once per id): decided by policy or a person, answered upstream with
   * an `mcp_approval_response`. A denial is followed by a response; an approved call that does not show
   * up within `APPROVED_CALL_WAIT_MS` while no response runs gets one to run it.
   */
  async onApprovalRequest(item: McpApprovalRequestItem): Promise<void> {
    if (this.#seenApprovalRequests.has(item.id)) return;
    this.#seenApprovalRequests.add(item.id);
    const server = item.server_label;
    let d: ApprovalDecision;
    if (evaluatePolicy(this.#d.policyOf(server), item.name) === "allow") {
      d = { approve: true, source: "policy" };
      // Decisions of the queue are counted by its observer (observeApprovals); policy ones here.
      this.#d.metrics.approvals.inc({ server, decision: "approved", source: "policy" });
    } else {
      try {
        d = await this.#d.ask(
          { server, tool: item.name, arguments: item.arguments, mode: "native" },
          item.id,
        );
      } catch (err) {
        d = { approve: false, source: "cancelled", reason: err instanceof Error ? err.message : String(err) };
      }
    }
    if (this.#d.closed()) return;
    this.#d.send({
      type: "conversation.item.create",
      previous_item_id: item.id,
      item: {
        type: "mcp_approval_response",
        id: `apr_${randomUUID().replace(/-/g, "").slice(0, 24)}`,
        approval_request_id: item.id,
        approve: d.approve,
        ...(d.approve ? {} : { reason: d.reason ?? "Not approved." }),
      },
    });
    if (!d.approve) {
      this.#d.tool({ name: item.name, server, status: "failed" });
      this.#d.respond();
      return;
    }
    // Some upstreams run the approved call at once, others on the next response.create: ask for one
    // unless the call (or a response carrying it) shows up first.
    const timer = setTimeout(() => {
      this.#followUps.delete(timer);
      if (this.#d.closed() || this.#d.responding()) return;
      if (this.#approvedSeen.has(item.id)) return;
      this.#d.respond();
    }, APPROVED_CALL_WAIT_MS);
    timer.unref();
    this.#followUps.add(timer);
  }

  /** An `mcp_call` item seen (added or done): the call started, unless it is known or finished. */
  onCallSeen(id: string, server: string, tool: string, approvalRequestId?: string | null): void {
    if (approvalRequestId) this.#approvedSeen.add(approvalRequestId);
    if (this.#calls.has(id) || this.#finished.has(id)) return;
    this.#calls.set(id, { server, tool, startedAt: this.#d.now() });
    this.#d.tool({ name: tool, server, status: "started" });
    const early = this.#outcomes.get(id);
    if (early !== undefined) this.#finish(id, early);
  }

  /** `response.mcp_call.completed|failed`: finishes the call, or waits for its item to name it. */
  onOutcome(id: string, ok: boolean): void {
    if (this.#finished.has(id)) return;
    if (this.#calls.has(id)) return this.#finish(id, ok);
    this.#outcomes.set(id, ok);
  }

  /** A finished `mcp_call` item: its `error` says how it went unless the outcome event said so first. */
  onItemDone(item: McpCallItem): void {
    if (this.#finished.has(item.id)) return;
    const ok = this.#outcomes.get(item.id) ?? (item.error === null || item.error === undefined);
    this.#outcomes.set(item.id, ok);
    this.onCallSeen(item.id, item.server_label, item.name, item.approval_request_id);
    if (!this.#finished.has(item.id)) this.#finish(item.id, ok);
  }

  /** The session closed: no follow-up is asked for any more. */
  close(): void {
    for (const t of this.#followUps) clearTimeout(t);
    this.#followUps.clear();
  }

  /** Exactly once per call: metrics, the `tool` event, then `finished`. */
  #finish(id: string, ok: boolean): void {
    const call = this.#calls.get(id);
    if (!call) return;
    this.#calls.delete(id);
    this.#outcomes.delete(id);
    this.#finished.add(id);
    const { server, tool, startedAt } = call;
    const m = this.#d.metrics;
    m.toolCalls.inc({ server, tool, mode: "native", outcome: ok ? "success" : "error" });
    m.toolCallDuration.observe({ server, mode: "native" }, (this.#d.now() - startedAt) / 1000);
    this.#d.tool({ name: tool, server, status: ok ? "completed" : "failed" });
    this.#d.finished();
  }
}
