/**
 * Client function calls of one session: the approval policy, the call through the tool provider, and its
 * output back upstream followed by a response. A call outlives an upstream drop (its output is handed to
 * the conversation's next session) unless the session is closed by us or the conversation ends.
 */
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import { evaluatePolicy } from "../approvals/policy.js";
import type { ApprovalDecision, ApprovalRequest } from "../approvals/queue.js";
import type { RequireApproval } from "../config/model.js";
import type { RoutedTool, ToolProvider } from "../mcp/types.js";
import type { Metrics } from "../metrics.js";
import type { ConversationEvents, ConversationTools } from "./conversation.js";

/** A client function call that finished after its session closed under it (upstream drop). */
export interface OrphanedCallOutput {
  readonly callId: string;
  readonly name: string;
  readonly arguments: string;
  readonly output: string;
}

export interface FunctionCallDeps {
  readonly tools: ToolProvider;
  /** The catalog's function tools for this session now (the conversation's own come on top). */
  readonly functionTools: () => readonly RoutedTool[];
  readonly policyOf: (server: string) => RequireApproval;
  readonly ask: (req: Omit<ApprovalRequest, "satelliteId">) => Promise<ApprovalDecision>;
  readonly metrics: Metrics;
  readonly send: (event: RealtimeClientEvent) => void;
  readonly tool: (e: ConversationEvents["tool"][0]) => void;
  readonly closed: () => boolean;
  /** After a close: the session dropped under running calls and their outputs are to be handed over. */
  readonly orphaned: () => boolean;
  readonly handOver: (o: OrphanedCallOutput) => void;
  /** Asks for a response (after the last call in flight). */
  readonly respond: () => void;
  /** A call ended without asking for a response (the session may have become idle). */
  readonly settled: () => void;
}

export class FunctionCalls {
  readonly #d: FunctionCallDeps;
  readonly #abort = new AbortController();
  #inFlight = 0;
  /** Bumped by `newTurn`: a call of an abandoned turn hands its output over without asking for an answer. */
  #turnEpoch = 0;
  #own: ConversationTools | null = null;

  constructor(deps: FunctionCallDeps) {
    this.#d = deps;
  }

  /** Calls running now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Sets the conversation's own tools (`ConversationOptions.tools`); true when they changed. */
  setOwn(tools: ConversationTools | null): boolean {
    if (this.#own === tools) return false;
    this.#own = tools;
    return true;
  }

  /** The function tools offered: the catalog's, and the conversation's own over any of the same name. */
  offered(): readonly RoutedTool[] {
    const base = this.#d.functionTools();
    const own = this.#own?.tools() ?? [];
    if (own.length === 0) return base;
    const names = new Set(own.map((t) => t.name));
    return [...base.filter((t) => !names.has(t.name)), ...own];
  }

  /** The listener abandoned its turn: calls running now add their output but ask for no answer. */
  newTurn(): void {
    this.#turnEpoch++;
  }

  /** Stops every call running now and any later one. Idempotent. */
  abort(): void {
    this.#abort.abort();
  }

  /** `response.function_call_arguments.done`: runs the call. Never rejects. */
  async run(callId: string, name: string, args: string): Promise<void> {
    this.#inFlight++;
    const epoch = this.#turnEpoch;
    let output: string;
    try {
      output = await this.#call(name, args);
    } catch (err) {
      output = JSON.stringify({
        error: "internal",
        message: err instanceof Error ? err.message : String(err),
      });
    }
    this.#inFlight--;
    if (this.#d.closed()) {
      if (this.#d.orphaned()) this.#d.handOver({ callId, name, arguments: args, output });
      return;
    }
    this.#d.send({
      type: "conversation.item.create",
      item: { type: "function_call_output", call_id: callId, output },
    });
    // The listener abandoned the turn that made this call: its output stays, no answer is asked for.
    if (epoch !== this.#turnEpoch) return this.#d.settled();
    this.#d.respond();
  }

  /** The call's output (a denial or an error as JSON the model can read). */
  async #call(name: string, args: string): Promise<string> {
    const routed = this.offered().find((t) => t.name === name);
    const server = routed?.server ?? "unknown";
    const tool = routed?.tool ?? name;
    // The conversation's own tools run without an approval.
    const own = this.#own?.tools().some((t) => t.name === name) === true ? this.#own : null;
    if (routed && !own && evaluatePolicy(this.#d.policyOf(server), tool) === "ask") {
      const d = await this.#d.ask({ server, tool, arguments: args, mode: "client" });
      if (!d.approve) {
        this.#d.metrics.toolCalls.inc({ server, tool, mode: "client", outcome: "denied" });
        this.#d.tool({ name: tool, server, status: "failed" });
        return JSON.stringify({ error: "not_approved", message: d.reason ?? "Not approved." });
      }
    }
    // "started" only once it may run: a call waiting for a person is not running yet.
    this.#d.tool({ name: tool, server, status: "started" });
    // One signal per call: the MCP SDK never removes its abort listener, so the session's own
    // signal would collect one per call for the session's lifetime.
    const call = new AbortController();
    const forward = (): void => call.abort();
    this.#abort.signal.addEventListener("abort", forward, { once: true });
    let outcome;
    try {
      outcome = own
        ? await own.callTool(name, args)
        : await this.#d.tools.callTool(name, args, { signal: call.signal });
    } finally {
      this.#abort.signal.removeEventListener("abort", forward);
    }
    this.#d.tool({
      name: tool,
      server: outcome.server ?? server,
      status: outcome.ok ? "completed" : "failed",
    });
    return outcome.output;
  }
}
