/**
 * Approval policy (pure). `always` means a person decides; `never` means no approval is needed;
 * a per-tool map decides per tool, and unlisted tools follow the server's default (`always`).
 */
import type { RequireApproval } from "../config/model.js";

export type PolicyDecision = "ask" | "allow";

/** What the policy says for one tool of a server. Unknown/unlisted tools are always asked. */
export function evaluatePolicy(policy: RequireApproval, tool: string): PolicyDecision {
  if (policy === "never") return "allow";
  if (policy === "always") return "ask";
  return Object.hasOwn(policy, tool) && policy[tool] === "never" ? "allow" : "ask";
}

/**
 * The Realtime API's `require_approval` form for a native MCP entry. The seed's per-tool map is
 * converted to `{always:{tool_names}, never:{tool_names}}`; it is never passed through raw.
 * Tools not listed there fall to the API default (`always`), which matches `evaluatePolicy`.
 */
export type ApiRequireApproval =
  "always" | "never" | { always?: { tool_names: string[] }; never?: { tool_names: string[] } };

export function toApiRequireApproval(policy: RequireApproval): ApiRequireApproval {
  if (policy === "always" || policy === "never") return policy;
  const always: string[] = [];
  const never: string[] = [];
  for (const [tool, mode] of Object.entries(policy).sort(([a], [b]) => a.localeCompare(b)))
    (mode === "never" ? never : always).push(tool);
  const out: { always?: { tool_names: string[] }; never?: { tool_names: string[] } } = {};
  if (always.length > 0) out.always = { tool_names: always };
  if (never.length > 0) out.never = { tool_names: never };
  if (!out.always && !out.never) return "always";
  return out;
}
